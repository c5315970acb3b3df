#!/usr/bin/env python3
"""Measure how well an image's orientation (upright, rotated 90 degrees either way, upside down)
can be told from the image, before any orientation check is built (docs/models/README.md,
"Refusal", the 2026-12-07 orientation finding). Nothing is written to the repository.

    /usr/bin/python3 ml/measure_orientation.py --task chest-xray --model linear
    /usr/bin/python3 ml/measure_orientation.py --task brain-mri --model cnn --epochs 8

Trained on train/ only: every image in its 8 mirrored and rotated forms, labelled by how it
looks (upright or mirrored left-right: upright; rotated 90 clockwise, with or without the
mirror; rotated 180 or flipped vertically: upside down; rotated 90 counter-clockwise), since a
mirrored upright scan should not be flagged. Measured on test/ (and chest external/, never
trained on): for thresholds on P(upright), the share of upright images flagged and the share of
each rotation caught.

- linear: a 4-class logistic regression on the scan-type router's 16 x 16 thumbnail
  (ml/train_router.py), or --grid 32; seconds.
- cnn: three 3 x 3 conv / ReLU / max-pool stages (8, 16, 32 channels) and a linear layer on a
  56 x 56 thumbnail, 8 epochs of Adam with a one-cycle schedule and brightness / contrast jitter;
  about 2.5 min an epoch for brain-mri on 2 shared cores.
"""
import argparse
import os

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 224


def thumbnails(data_dir, split, grid):
    """grid x grid block means of gray / 255 of the 224 px image, as ml/train_router.py."""
    out, root = [], os.path.join(data_dir, split)
    for cls in sorted(os.listdir(root)):
        for f in sorted(os.listdir(os.path.join(root, cls))):
            if not f.lower().endswith((".png", ".jpg", ".jpeg")):
                continue
            with Image.open(os.path.join(root, cls, f)) as im:
                im = im.convert("RGB")
                if im.size != (SIZE, SIZE):
                    im = im.resize((SIZE, SIZE), Image.BILINEAR)
                gray = np.asarray(im, dtype=np.float64).sum(axis=2) / 3 / 255
            b = SIZE // grid
            out.append(gray.reshape(grid, b, grid, b).mean(axis=(1, 3)))
    return np.array(out, dtype=np.float32)


def variants(x):
    """(name, class, images): class 0 upright, 1 rotated 90 clockwise, 2 upside down, 3 rotated 90 counter-clockwise."""
    rot = lambda k, a: np.ascontiguousarray(np.rot90(a, k, axes=(1, 2)))  # k = 1: counter-clockwise
    mirror = lambda a: a[:, :, ::-1]
    return [
        ("upright", 0, x), ("mirrored", 0, np.ascontiguousarray(mirror(x))),
        ("cw90", 1, rot(-1, x)), ("cw90 mirrored", 1, rot(-1, mirror(x))),
        ("rot180", 2, rot(2, x)), ("flipV", 2, np.ascontiguousarray(x[:, ::-1, :])),
        ("ccw90", 3, rot(1, x)), ("ccw90 mirrored", 3, rot(1, mirror(x))),
    ]


def train_linear(train):
    X = np.concatenate([a.reshape(len(a), -1) for _, _, a in variants(train)])
    y = np.concatenate([np.full(len(train), c) for _, c, _ in variants(train)])
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z, Y = torch.tensor((X - mean) / std, dtype=torch.float32), torch.tensor(y)
    lin = torch.nn.Linear(Z.shape[1], 4)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=300, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(Z), Y) + 1e-3 * (lin.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lambda a: lin(torch.tensor((a.reshape(len(a), -1) - mean) / std, dtype=torch.float32))


def train_cnn(train, epochs):
    stage = lambda i, o: [torch.nn.Conv2d(i, o, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
    side = train.shape[1] // 8
    net = torch.nn.Sequential(*stage(1, 8), *stage(8, 16), *stage(16, 32), torch.nn.Flatten(), torch.nn.Linear(32 * side * side, 4))
    X = torch.tensor((np.concatenate([a for _, _, a in variants(train)]) - 0.5) / 0.25)[:, None]
    Y = torch.tensor(np.concatenate([np.full(len(train), c) for _, c, _ in variants(train)]))
    opt = torch.optim.Adam(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 4e-3, total_steps=epochs * ((len(X) + 127) // 128))
    for epoch in range(epochs):
        net.train()
        perm, correct = torch.randperm(len(X)), 0
        for i in range(0, len(X), 128):
            idx = perm[i:i + 128]
            # Brightness and contrast jitter, so that exposure is no cue.
            xb = X[idx] * (1 + 0.2 * (torch.rand(len(idx), 1, 1, 1) - 0.5)) + 0.2 * (torch.rand(len(idx), 1, 1, 1) - 0.5)
            out = net(xb)
            loss = torch.nn.functional.cross_entropy(out, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += (out.argmax(1) == Y[idx]).sum().item()
        print(f"epoch {epoch + 1}: train accuracy {correct / len(X):.4f}", flush=True)
    net.eval()
    return lambda a: net(torch.tensor((a - 0.5) / 0.25)[:, None])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=["brain-mri", "chest-xray"], required=True)
    p.add_argument("--model", choices=["linear", "cnn"], default="linear")
    p.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    p.add_argument("--grid", type=int, help="thumbnail side (linear 16, cnn 56)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    grid = args.grid or (16 if args.model == "linear" else 56)
    data = os.path.join(args.datasets, args.task)
    train = thumbnails(data, "train", grid)
    model = train_linear(train) if args.model == "linear" else train_cnn(train, args.epochs)

    def p_upright(a):
        with torch.no_grad():
            return torch.softmax(model(a), 1)[:, 0].numpy()

    train_up = p_upright(train)
    print(f"{args.task} {args.model} {grid} x {grid}: train/ upright P(upright) 0.05%, 0.1%, 0.5% quantiles "
          + ", ".join(f"{q:.3f}" for q in np.quantile(train_up, [0.0005, 0.001, 0.005])))
    splits = ["test", "external"] if args.task == "chest-xray" else ["test"]
    for split in splits:
        scores = {name: p_upright(a) for name, _, a in variants(thumbnails(data, split, grid))}
        print(f"{split} ({len(scores['upright'])} images): share flagged when P(upright) < threshold")
        print("  threshold  train/ upright  " + "  ".join(f"{n:>14}" for n in scores))
        for t in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
            print(f"  {t:9.2f}  {(train_up < t).mean():14.4f}  " + "  ".join(f"{(s < t).mean():14.4f}" for s in scores.values()))


if __name__ == "__main__":
    main()
