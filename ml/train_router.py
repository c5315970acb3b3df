#!/usr/bin/env python3
"""Train the scan-type router: which of our models an image is for (brain MRI or chest X-ray).

    /usr/bin/python3 ml/train_router.py --datasets ../shared/datasets [--out src/ml/scan-type-router.json]

A logistic regression on 272 cheap features of the preprocessed 224 x 224 grayscale image
(ml/preprocessing.json): its 16 x 16 average-pooled thumbnail and a 16-bin grey-level
histogram. Brain MRI slices (dark background around a bright skull) and chest radiographs
(bright body, dark lungs) differ in gross layout, which such features see. Trained in seconds
on the train/ images of both datasets (never test/ or external/); deterministic. Serving
(src/ml/routing.ts) computes the same features from the same pixels and applies the weights.

The router only picks between the two; "neither" is decided by each model's own refusal
checks (input checks and the out-of-distribution distance), see docs/models/README.md.
"""
import argparse
import datetime
import hashlib
import json
import os

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = ["brain-mri", "chest-xray"]
GRID, BINS, SIZE = 16, 16, 224


def features(path):
    """Exactly as src/ml/routing.ts `routerFeatures`: mean of R, G, B (8-bit after the spec's
    fill-resize), 16 x 16 block means of gray / 255, then the share of pixels per grey-level bin."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (SIZE, SIZE):
            im = im.resize((SIZE, SIZE), Image.BILINEAR)
        gray = np.asarray(im, dtype=np.float64).sum(axis=2) / 3 / 255
    block = SIZE // GRID
    thumb = gray.reshape(GRID, block, GRID, block).mean(axis=(1, 3)).ravel()
    bins = np.minimum((gray * BINS).astype(int), BINS - 1)
    hist = np.bincount(bins.ravel(), minlength=BINS) / gray.size
    return np.concatenate([thumb, hist])


def images(data_dir, split):
    out = []
    root = os.path.join(data_dir, split)
    for cls in sorted(os.listdir(root)):
        for f in sorted(os.listdir(os.path.join(root, cls))):
            if f.lower().endswith((".png", ".jpg", ".jpeg")):
                out.append(os.path.join(root, cls, f))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    p.add_argument("--out", default=os.path.join(ROOT, "src", "ml", "scan-type-router.json"))
    p.add_argument("--l2", type=float, default=1e-2)
    p.add_argument("--steps", type=int, default=3000)
    args = p.parse_args()

    X, y, paths = [], [], []
    for label, t in enumerate(TYPES):
        for path in images(os.path.join(args.datasets, t), "train"):
            X.append(features(path))
            y.append(label)
            paths.append(path)
    X, y = np.array(X), np.array(y, dtype=np.float64)
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / std
    # Plain gradient descent on the L2-regularised log loss: deterministic, no dependency.
    w, b = np.zeros(Z.shape[1]), 0.0
    for _ in range(args.steps):
        p1 = 1 / (1 + np.exp(-(Z @ w + b)))
        w -= 0.5 * (Z.T @ (p1 - y) / len(y) + args.l2 * w)
        b -= 0.5 * float((p1 - y).mean())
    p1 = 1 / (1 + np.exp(-(Z @ w + b)))
    train_acc = float(((p1 >= 0.5) == (y == 1)).mean())

    h = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    router = {
        "description": "Scan-type router (ml/train_router.py): logistic regression, P(chest-xray) = sigmoid(w . (f - mean) / std + b), "
                       "f = 16 x 16 block means of gray/255 of the 224 x 224 preprocessed image, then a 16-bin grey-level histogram.",
        "types": TYPES,
        "grid": GRID,
        "bins": BINS,
        "size": SIZE,
        "mean": [round(float(v), 7) for v in mean],
        "std": [round(float(v), 7) for v in std],
        "weights": [round(float(v), 7) for v in w],
        "bias": round(b, 7),
        "training": {"images": {t: int((y == i).sum()) for i, t in enumerate(TYPES)}, "trainAccuracy": round(train_acc, 5),
                     "l2": args.l2, "steps": args.steps, "dataSha256": h.hexdigest(),
                     "command": "/usr/bin/python3 ml/train_router.py --datasets ../shared/datasets",
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    }
    with open(args.out, "w") as f:
        json.dump(router, f, indent=1)
        f.write("\n")
    print(f"router: {len(y)} train images, train accuracy {train_acc:.4f}, wrote {args.out}")


if __name__ == "__main__":
    main()
