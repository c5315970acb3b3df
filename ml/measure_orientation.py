#!/usr/bin/env python3
"""Measure how well an image's orientation (upright, rotated 90 degrees either way, upside down)
can be told from the image, before any orientation check is built (docs/models/README.md,
"Refusal", the 2026-12-07 orientation finding). Nothing is written to the repository.

    /usr/bin/python3 ml/measure_orientation.py --task chest-xray --model linear
    /usr/bin/python3 ml/measure_orientation.py --task brain-mri --model cnn --epochs 8
    /usr/bin/python3 ml/measure_orientation.py --task brain-mri --model cnn-bn --epochs 18 --held-out

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
- cnn-bn: wider (--width 16: 16, 32, 64 channels, a fourth 64-channel conv), batch norm, dropout
  0.2, AdamW with a one-cycle schedule at batch 64; each epoch shows every image once in one of
  its 8 forms drawn at random (so 8 times cheaper an epoch than cnn); 56 x 56; 12-13 s of CPU
  an epoch for brain-mri.

--held-out measures as ml/train_orientation.py fixes a check, without reading test/: fitted on
train/ outside the served model's validation split (ml/validation_split.py), threshold by its rule
(half of the 0.05% quantile of P(upright) over the held-out images as stored and mirrored), and the
held-out images' share of each form flagged at that threshold (and at 0.5, to trace the curve).
linear then is ml/train_orientation.py's own fit (32 x 32, L2 1e-4, float64). For the CNNs it also
reports the four quarter turns combined (the sum over r of log P(class k + r | the image turned r
quarters clockwise)), which costs 4 passes.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 224


def thumbnails(data_dir, split, grid, paths=None):
    """grid x grid block means of gray / 255 of the 224 px image, as ml/train_router.py (paths: a list the files are appended to)."""
    out, root = [], os.path.join(data_dir, split)
    for cls in sorted(os.listdir(root)):
        for f in sorted(os.listdir(os.path.join(root, cls))):
            if not f.lower().endswith((".png", ".jpg", ".jpeg")):
                continue
            if paths is not None:
                paths.append(os.path.join(root, cls, f))
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


def train_cnn_bn(train, epochs, width):
    block = lambda i, o: [torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]
    w, side = width, train.shape[1] // 8
    net = torch.nn.Sequential(*block(1, w), torch.nn.MaxPool2d(2), *block(w, 2 * w), torch.nn.MaxPool2d(2),
                              *block(2 * w, 4 * w), torch.nn.MaxPool2d(2), *block(4 * w, 4 * w),
                              torch.nn.Flatten(), torch.nn.Dropout(0.2), torch.nn.Linear(4 * w * side * side, 4))
    forms = variants(train)
    X = torch.tensor(np.stack([a for _, _, a in forms]))  # [8 forms, n, side, side]
    Y = torch.tensor([c for _, c, _ in forms])
    n, batch, lr = len(train), 64, 4e-3
    opt = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * ((n + batch - 1) // batch))
    for epoch in range(epochs):
        net.train()
        perm, form, correct = torch.randperm(n), torch.randint(0, 8, (n,)), 0
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            f = form[idx]
            xb = X[f, idx][:, None]
            xb = xb * (1 + 0.3 * (torch.rand(len(idx), 1, 1, 1) - 0.5)) + 0.2 * (torch.rand(len(idx), 1, 1, 1) - 0.5)
            out = net((xb - 0.5) / 0.25)
            loss = torch.nn.functional.cross_entropy(out, Y[f])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += (out.argmax(1) == Y[f]).sum().item()
        print(f"epoch {epoch + 1}: train accuracy {correct / n:.4f}", flush=True)
    net.eval()
    score = lambda a: net(torch.tensor((np.ascontiguousarray(a) - 0.5) / 0.25)[:, None])
    score.net = net  # ml/train_orientation.py --task brain-mri exports it
    return score


def quarter_turns(model):
    """P(upright) from the image and its three quarter turns: the image looks k if each turn r of it looks k + r."""
    def p_upright(a):
        with torch.no_grad():
            s = torch.zeros(len(a), 4, dtype=torch.float64)
            for r in range(4):
                lp = torch.log_softmax(model(np.ascontiguousarray(np.rot90(a, -r, axes=(1, 2)))), 1).double()
                s += lp[:, [(k + r) % 4 for k in range(4)]]
            return torch.softmax(s, 1)[:, 0].numpy()
    return p_upright


def held_out_measure(args, data):
    """ml/train_orientation.py's fit and threshold rule; the held-out train/ images measured, test/ not read."""
    with open(os.path.join(ROOT, "models", f"{args.task}.json")) as f:
        seed = json.load(f)["training"]["recipe"]["seed"]
    held = subprocess.run([sys.executable, os.path.join(ROOT, "ml", "validation_split.py"), "--task", args.task, "--data", data,
                           "--seed", str(seed)], check=True, capture_output=True, text=True).stdout
    held_out = {os.path.realpath(json.loads(line)["path"]) for line in held.splitlines()}
    if args.model == "linear":
        sys.path.insert(0, os.path.join(ROOT, "ml"))
        import train_orientation as chest  # its fit and 32 px float64 thumbnail, as shipped for chest

        paths = chest.images(data, "train")
        x = np.array([chest.thumbnail(q) for q in paths])
        held_mask = np.array([os.path.realpath(q) in held_out for q in paths])
        mean, std, w, b, _ = chest.fit(x[~held_mask])
        scorers = {"linear 32 px, L2 1e-4": lambda a: chest.p_upright((mean, std, w, b), a)}
    else:
        paths = []
        x = thumbnails(data, "train", args.grid or 56, paths)
        held_mask = np.array([os.path.realpath(q) in held_out for q in paths])
        model = train_cnn(x[~held_mask], args.epochs) if args.model == "cnn" else train_cnn_bn(x[~held_mask], args.epochs, args.width)

        def plain(a):
            with torch.no_grad():
                return torch.softmax(model(a), 1)[:, 0].numpy()

        scorers = {f"{args.model} {x.shape[1]} px": plain, f"{args.model} {x.shape[1]} px, 4 quarter turns": quarter_turns(model)}
    hx = x[held_mask]
    print(f"fitted on {int((~held_mask).sum())} train/ images; {len(hx)} held out")
    for name, p_upright in scorers.items():
        ups = np.concatenate([p_upright(hx), p_upright(np.ascontiguousarray(hx[:, :, ::-1]))])
        q = float(np.quantile(ups, 0.0005))
        print(f"{name}: held-out upright P(upright) 0.05% quantile {q:.5f}, lowest {ups.min():.5f}; threshold {q / 2:.6f}")
        for t, label in [(q / 2, "by the rule"), (0.5, "at 0.5")]:
            print(f"  share flagged {label}: " + ", ".join(f"{v} {(p_upright(a) < t).mean():.4f}" for v, _, a in variants(hx)), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=["brain-mri", "chest-xray"], required=True)
    p.add_argument("--model", choices=["linear", "cnn", "cnn-bn"], default="linear")
    p.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    p.add_argument("--grid", type=int, help="thumbnail side (linear 16, cnn 56)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--width", type=int, default=16, help="cnn-bn's first channels")
    p.add_argument("--held-out", action="store_true", help="measure by ml/train_orientation.py's rule on held-out train/ images")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    grid = args.grid or (16 if args.model == "linear" else 56)
    data = os.path.join(args.datasets, args.task)
    if args.held_out:
        return held_out_measure(args, data)
    train = thumbnails(data, "train", grid)
    model = {"linear": lambda: train_linear(train), "cnn": lambda: train_cnn(train, args.epochs),
             "cnn-bn": lambda: train_cnn_bn(train, args.epochs, args.width)}[args.model]()

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
