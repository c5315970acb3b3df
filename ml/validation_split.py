#!/usr/bin/env python3
"""The validation images ml/train.py carved from train/ (by patient or group), as JSON lines
{"path", "class", "group"}: the same MANIFEST.tsv filter and the same seeded group shuffle as
train.py's load_split + split_by_group, without loading pixels or torch.

    /usr/bin/python3 ml/validation_split.py --task chest-xray --data ../shared/datasets/chest-xray [--seed 20261125] [--val-fraction 0.12]
"""
import argparse
import csv
import json
import os
import random

GROUP_COLUMN = {"brain-mri": "group", "chest-xray": "patient"}
LABELS = {"brain-mri": ["glioma", "meningioma", "notumor", "pituitary"], "chest-xray": ["normal", "bacterial", "viral"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True, choices=sorted(LABELS))
    p.add_argument("--data", required=True)
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--val-fraction", type=float, default=0.12)
    args = p.parse_args()
    items = []
    with open(os.path.join(args.data, "MANIFEST.tsv")) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["split"] != "train" or row["class"] not in LABELS[args.task]:
                continue
            path = os.path.join(args.data, "train", row["class"], row["file"])
            if os.path.exists(path):
                items.append({"path": path, "class": row["class"], "group": row[GROUP_COLUMN[args.task]]})
    # As train.py split_by_group: sorted groups, shuffled by random.Random(seed), the first share held out.
    groups = sorted({it["group"] for it in items})
    random.Random(args.seed).shuffle(groups)
    val_groups = set(groups[: max(1, int(len(groups) * args.val_fraction))])
    for it in items:
        if it["group"] in val_groups:
            print(json.dumps(it))


if __name__ == "__main__":
    main()
