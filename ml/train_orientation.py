#!/usr/bin/env python3
"""Train the orientation check: is a scan upright, or rotated 90 degrees, or upside down?
(docs/models/README.md, "Refusal", orientation). Serving: src/ml/orientation.ts.

    /usr/bin/python3 ml/train_orientation.py --task chest-xray [--out src/ml/orientation-chest-xray.json]
    /usr/bin/python3 ml/train_orientation.py --task brain-mri --threads 1 [--out src/ml/orientation-brain-mri.json]

chest-xray: a 4-class logistic regression on a 32 x 32 thumbnail (block means of gray / 255 of the
224 px preprocessed image, as the scan-type router's 16 x 16 one in ml/train_router.py); serving
computes it from the channel sums preprocessing already made, plus a 4 x 1024 product
(no model pass). The router's own 16 x 16 thumbnail was tried first (2026-12-07, same rule): it
flagged no upright image of test/ or external/, but caught only 93% of the upside-down test/
images the model answers (146 of 157), under the 95% asked. Then 16 px at L2 1e-4, 1e-3 and 1e-2
and 32 px at 1e-4 and 1e-3 were compared on the held-out train/ images below only (the share of
their upside-down forms answered by the model that the rule catches): 32 px at 1e-4 caught most,
98.8% (16 px: 96.5% at best), and is what ships.

Every train/ image is used in its 8 rotated and mirrored forms, labelled by how it looks: upright
(as stored, or mirrored left-right: a mirrored scan is still upright and must not be refused),
rotated 90 degrees clockwise (with or without the mirror), upside down (rotated 180 degrees, or
flipped top to bottom) and rotated 90 degrees counter-clockwise.

The threshold rule, fixed before anything was measured on test/ or external/:
  - the weights are fitted on train/ without the served model's validation patients
    (ml/validation_split.py with the manifest's seed, 12%), which are held out;
  - the check refuses when P(upright) < half of the 0.05% quantile of P(upright) over the held-out
    images in their two upright forms (as stored and mirrored).
The held-out images then also give the share of each rotation caught. test/ and chest external/
are only measured (--measure), never used to fit or to choose.

brain-mri: the same 32 px regression caught under half of the quarter turns held out (b518753,
docs/models/README.md), so brain's check is ml/measure_orientation.py's cnn-bn: 4 conv layers
(16-32-64-64, batch norm) on a 56 x 56 thumbnail (block means as above, 4 x 4 px blocks), 18 epochs,
each image in one of its 8 forms at random an epoch. It is served with its four quarter turns
combined (P that the image looks k, from the sum over r of log P(class k + r | the image turned r
quarters clockwise)), one ONNX graph with the turns inside it: src/ml/orientation-brain-mri.onnx,
input "thumbnail" [n, 1, 56, 56] of gray / 255, output "probabilities" [n, 4]. Same split and same
threshold rule as chest, computed with the exported graph's own arithmetic (float32). It catches
about 98% of quarter turns held out but only about two thirds of upside-down slices (an axial slice
has nearly the same outline either way up). With every turn refused it refused 0.5% of upright and
1.2% of mirrored test/ slices, over brain's budget, each one as "upside down" (48321cd), so it is served
for quarter turns only: its JSON's "refuses" (docs/models/README.md, "Orientation").
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID, SIZE = 32, 224
CLASSES = ["upright", "rotated_cw", "upside_down", "rotated_ccw"]
SEED = 0
L2 = 1e-4


def thumbnail(path):
    """As ml/train_router.py `features` without the histogram (a histogram cannot see rotation)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (SIZE, SIZE):
            im = im.resize((SIZE, SIZE), Image.BILINEAR)
        gray = np.asarray(im, dtype=np.float64).sum(axis=2) / 3 / 255
    b = SIZE // GRID
    return gray.reshape(GRID, b, GRID, b).mean(axis=(1, 3))


def images(data_dir, split):
    out, root = [], os.path.join(data_dir, split)
    for cls in sorted(os.listdir(root)):
        for f in sorted(os.listdir(os.path.join(root, cls))):
            if f.lower().endswith((".png", ".jpg", ".jpeg")):
                out.append(os.path.join(root, cls, f))
    return out


def forms(x):
    """(name, class, images) for a stack of square images [n, h, w]; np.rot90 k = 1 is counter-clockwise."""
    rot = lambda k, a: np.ascontiguousarray(np.rot90(a, k, axes=(1, 2)))
    mirror = lambda a: np.ascontiguousarray(a[:, :, ::-1])
    return [
        ("upright", 0, x), ("mirrored", 0, mirror(x)),
        ("cw90", 1, rot(-1, x)), ("cw90 mirrored", 1, rot(-1, mirror(x))),
        ("rot180", 2, rot(2, x)), ("flipV", 2, np.ascontiguousarray(x[:, ::-1, :])),
        ("ccw90", 3, rot(1, x)), ("ccw90 mirrored", 3, rot(1, mirror(x))),
    ]


def fit(x):
    """4-class logistic regression (L-BFGS, L2 on the weights of standardised features, from zeros); deterministic."""
    X = np.concatenate([a.reshape(len(a), -1) for _, _, a in forms(x)])
    y = np.concatenate([np.full(len(x), c) for _, c, _ in forms(x)])
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z, Y = torch.tensor((X - mean) / std, dtype=torch.float64), torch.tensor(y)
    lin = torch.nn.Linear(Z.shape[1], 4).double()
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=500, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(Z), Y) + L2 * (lin.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    train_acc = float((lin(Z).argmax(1) == Y).double().mean())
    return mean, std, lin.weight.detach().numpy(), lin.bias.detach().numpy(), train_acc


def p_upright(model, a):
    mean, std, w, b = model
    z = ((a.reshape(len(a), -1) - mean) / std) @ w.T + b
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e[:, 0] / e.sum(1)


def rates(model, x, threshold):
    return {name: float((p_upright(model, a) < threshold).mean()) for name, _, a in forms(x)}


def dumps(doc):
    """JSON with each list of numbers on one line, so the file reads as its structure."""
    text = json.dumps(doc, indent=1)
    return re.sub(r"\[\s*(-?[0-9][^\[\]{}\"]*?)\s*\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)


def sha_of(paths):
    h = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def held_out_paths(task, data):
    """The served model's validation images (ml/validation_split.py with its manifest's seed), and that seed."""
    with open(os.path.join(ROOT, "models", f"{task}.json")) as f:
        split_seed = json.load(f)["training"]["recipe"]["seed"]
    held = subprocess.run([sys.executable, os.path.join(ROOT, "ml", "validation_split.py"), "--task", task, "--data", data,
                           "--seed", str(split_seed)], check=True, capture_output=True, text=True).stdout
    return {os.path.realpath(json.loads(line)["path"]) for line in held.splitlines()}, split_seed


BRAIN_GRID, BRAIN_EPOCHS, BRAIN_WIDTH = 56, 18, 16


class QuarterTurns(torch.nn.Module):
    """The served brain check: the CNN on the thumbnail turned 0-3 quarters clockwise, combined."""

    def __init__(self, net, side):
        super().__init__()
        self.net, self.side = net, side
        base = np.arange(side * side).reshape(side, side)
        # Row r: the pixel indices of the thumbnail turned r quarters clockwise (np.rot90 k = -r).
        self.register_buffer("turns", torch.tensor(np.stack([np.rot90(base, -r).reshape(-1) for r in range(4)]).copy()))
        # An image that looks k looks k + r once turned r more quarters clockwise.
        self.register_buffer("shift", torch.tensor([[(k + r) % 4 for k in range(4)] for r in range(4)]))

    def forward(self, thumbnail):
        n = thumbnail.shape[0]
        turned = thumbnail.reshape(n, -1)[:, self.turns].reshape(n * 4, 1, self.side, self.side)
        lp = torch.log_softmax(self.net((turned - 0.5) / 0.25), 1).reshape(n, 4, 4)
        s = torch.gather(lp, 2, self.shift.unsqueeze(0).expand(n, 4, 4)).sum(1)
        return torch.softmax(s, 1)


def main_brain(args):
    sys.path.insert(0, os.path.join(ROOT, "ml"))
    from measure_orientation import thumbnails as grid_thumbnails, train_cnn_bn

    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    data = os.path.join(args.datasets, args.task)
    held_out, split_seed = held_out_paths(args.task, data)
    paths = []
    x = grid_thumbnails(data, "train", BRAIN_GRID, paths)
    held_mask = np.array([os.path.realpath(q) in held_out for q in paths])
    fit_x, held_x = x[~held_mask], x[held_mask]
    net = train_cnn_bn(fit_x, BRAIN_EPOCHS, BRAIN_WIDTH).net
    served = QuarterTurns(net, BRAIN_GRID).eval()

    def p_upright(a):
        with torch.no_grad():
            return np.concatenate([served(torch.tensor(np.ascontiguousarray(a[i:i + 256]))[:, None])[:, 0].numpy()
                                   for i in range(0, len(a), 256)])

    held_up = np.concatenate([p_upright(held_x), p_upright(held_x[:, :, ::-1])])
    q = float(np.quantile(held_up, 0.0005))
    threshold = q / 2
    held_rates = {name: float((p_upright(a) < threshold).mean()) for name, _, a in forms(held_x)}
    print(f"{args.task}: fitted on {len(fit_x)} train/ images; held out {len(held_x)}: P(upright) 0.05% quantile {q:.6g}, "
          f"lowest {held_up.min():.6g}; threshold {threshold:.6g}")
    print("  held-out share flagged: " + ", ".join(f"{k} {v:.4f}" for k, v in held_rates.items()), flush=True)

    out = args.out or os.path.join(ROOT, "src", "ml", f"orientation-{args.task}.json")
    onnx_path = os.path.splitext(out)[0] + ".onnx"
    torch.onnx.export(served, torch.zeros(1, 1, BRAIN_GRID, BRAIN_GRID), onnx_path, input_names=["thumbnail"],
                      output_names=["probabilities"], dynamic_axes={"thumbnail": {0: "n"}, "probabilities": {0: "n"}},
                      opset_version=13, do_constant_folding=True)
    with open(onnx_path, "rb") as f:
        onnx_sha = hashlib.sha256(f.read()).hexdigest()
    doc = {
        "description": f"Orientation check (ml/train_orientation.py --task {args.task}): a small CNN (ml/measure_orientation.py cnn-bn) "
                       f"on a {BRAIN_GRID} x {BRAIN_GRID} thumbnail t (block means of gray/255 of the 224 x 224 preprocessed image), "
                       "its four quarter turns combined inside the graph; refused when P(upright) < threshold.",
        "task": args.task,
        "kind": "onnx",
        "file": os.path.basename(onnx_path),
        "sha256": onnx_sha,
        "grid": BRAIN_GRID,
        "size": SIZE,
        "classes": CLASSES,
        "input": "thumbnail",
        "output": "probabilities",
        "threshold": float(f"{threshold:.6g}"),
        # Quarter turns only: with every turn refused, it refused 0.5% of upright and 1.2% of
        # mirrored test/ slices, all as upside down (docs/models/README.md, "Orientation").
        "refuses": ["rotated_cw", "rotated_ccw"],
        "refusesRule": "quarter turns only: every false refusal of the full check on test/ said upside down (commit 48321cd); "
                       "on the 741 held-out images this refuses no upright or mirrored slice and 98.4-98.8% of quarter turns",
        "training": {
            "command": f"/usr/bin/python3 ml/train_orientation.py --task {args.task} --threads {args.threads}",
            "seed": SEED,
            "model": f"cnn-bn, width {BRAIN_WIDTH}, {BRAIN_EPOCHS} epochs, batch 64, AdamW one-cycle 4e-3, brightness / contrast jitter",
            "images": int(len(fit_x)),
            "forms": "8 per image, one drawn at random an epoch: as stored and mirrored left-right (upright), rotated 90 cw / 180 / 90 ccw, "
                     "each also mirrored (rotated 180 mirrored = flipped top to bottom)",
            "heldOut": {"images": int(len(held_x)), "split": f"ml/validation_split.py --seed {split_seed} (the served model's validation images)",
                        "uprightQuantile0005": float(f"{q:.6g}"), "lowestUpright": float(f"{held_up.min():.6g}"),
                        "flagged": {k: round(v, 5) for k, v in held_rates.items()}},
            "thresholdRule": "half of the 0.05% quantile of P(upright) over the held-out images as stored and mirrored, fixed before test/ was measured",
            "dataSha256": sha_of(paths),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    with open(out, "w") as f:
        f.write(dumps(doc) + "\n")
    print(f"wrote {out} and {onnx_path} ({os.path.getsize(onnx_path)} bytes)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=["chest-xray", "brain-mri"], required=True)
    p.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    p.add_argument("--out", help="default src/ml/orientation-<task>.json")
    p.add_argument("--measure", action="store_true", help="also print the rates on test/ (and chest external/); chest only")
    p.add_argument("--threads", type=int, default=1, help="brain-mri's CNN training")
    args = p.parse_args()
    if args.task == "brain-mri":
        return main_brain(args)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    data = os.path.join(args.datasets, args.task)
    held_out, split_seed = held_out_paths(args.task, data)
    train_paths = images(data, "train")
    fit_paths = [q for q in train_paths if os.path.realpath(q) not in held_out]
    held_paths = [q for q in train_paths if os.path.realpath(q) in held_out]
    fit_x = np.array([thumbnail(q) for q in fit_paths])
    held_x = np.array([thumbnail(q) for q in held_paths])
    mean, std, w, b, train_acc = fit(fit_x)
    model = (mean, std, w, b)

    held_up = np.concatenate([p_upright(model, held_x), p_upright(model, held_x[:, :, ::-1])])
    q = float(np.quantile(held_up, 0.0005))
    threshold = q / 2
    held_rates = rates(model, held_x, threshold)
    print(f"{args.task}: fitted on {len(fit_paths)} train/ images x 8 forms (train accuracy {train_acc:.4f}); "
          f"held out {len(held_paths)}: P(upright) 0.05% quantile {q:.4f}, lowest {held_up.min():.4f}; threshold {threshold:.4f}")
    print("  held-out share flagged: " + ", ".join(f"{k} {v:.4f}" for k, v in held_rates.items()))

    out = args.out or os.path.join(ROOT, "src", "ml", f"orientation-{args.task}.json")
    doc = {
        "description": f"Orientation check (ml/train_orientation.py): 4-class logistic regression on a {GRID} x {GRID} "
                       "thumbnail t (block means of gray/255 of the 224 x 224 preprocessed image, row by row); "
                       "logits = weights . (t - mean) / std + bias; refused when softmax P(upright) < threshold.",
        "task": args.task,
        "grid": GRID,
        "size": SIZE,
        "classes": CLASSES,
        "mean": [round(float(v), 7) for v in mean],
        "std": [round(float(v), 7) for v in std],
        "weights": [[round(float(v), 7) for v in row] for row in w],
        "bias": [round(float(v), 7) for v in b],
        "threshold": round(threshold, 6),
        "training": {
            "command": f"/usr/bin/python3 ml/train_orientation.py --task {args.task}",
            "seed": SEED,
            "l2": L2,
            "images": len(fit_paths),
            "forms": "8 per image: as stored and mirrored left-right (upright), rotated 90 cw / 180 / 90 ccw, each also mirrored "
                     "(rotated 180 mirrored = flipped top to bottom)",
            "trainAccuracy": round(train_acc, 5),
            "heldOut": {"images": len(held_paths), "split": f"ml/validation_split.py --seed {split_seed} (the served model's validation patients)",
                        "uprightQuantile0005": round(q, 6), "flagged": {k: round(v, 5) for k, v in held_rates.items()}},
            "thresholdRule": "half of the 0.05% quantile of P(upright) over the held-out images as stored and mirrored, fixed before test/ was measured",
            "dataSha256": sha_of(train_paths),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    with open(out, "w") as f:
        f.write(dumps(doc) + "\n")
    print(f"wrote {out}")

    if args.measure:
        for split in ["test", "external"]:
            if not os.path.isdir(os.path.join(data, split)):
                continue
            x = np.array([thumbnail(q) for q in images(data, split)])
            ups = np.concatenate([p_upright(model, x), p_upright(model, x[:, :, ::-1])])
            r = rates(model, x, threshold)
            print(f"  {split}/ ({len(x)} images, lowest upright P {ups.min():.4f}): " + ", ".join(f"{k} {v:.4f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
