#!/usr/bin/env python3
"""Train one ImageMedix classifier, calibrate it, and export it to ONNX with its manifest.

    /usr/bin/python3 ml/train.py --task brain-mri --data ../shared/datasets/brain-mri
    /usr/bin/python3 ml/train.py --task chest-xray --data ../shared/datasets/chest-xray

Runs unchanged on a CUDA machine with a newer torch (it picks the device itself).
The preprocessing spec is ml/preprocessing.json, read by the Node server too.
"""
import argparse
import datetime
import hashlib
import inspect
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (TASKS, ROOT, SPEC, ImagemedixNet, ExportWrapper, flip_tta_forward, load_split,  # noqa: E402
                    preprocess_batch, metrics_report, binary_auc)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--data", required=True, help="dataset folder holding train/, test/ and MANIFEST.tsv")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=32, help="channels of the first stage")
    p.add_argument("--max-minutes", type=float, default=60.0, help="stop training after this long")
    p.add_argument("--stop-file", help="when this file appears, stop at the end of the current batch and export the "
                                       "best epoch validated so far (a long run on a shared machine cut to a deadline)")
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.12)
    p.add_argument("--out", default=os.path.join(ROOT, "models"))
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--ema", type=float, default=0.998,
                   help="decay of the exponential moving average of the weights that is validated and exported (0: off)")
    p.add_argument("--flip-tta", action="store_true",
                   help="average each answer with that of the mirrored image (also in the exported ONNX graph)")
    p.add_argument("--augment", choices=["standard", "scanner"], default="standard",
                   help="scanner: also imitate other sites' exposure and optics (gamma, contrast, blur, noise, "
                        "wider crop and scale), the shift a second hospital shows")
    p.add_argument("--hist-match", type=float, default=0.0,
                   help="probability that a training image's grey-level histogram is matched (quantile mapping) to "
                        "that of another random image of the batch, either class, label kept; 0: off")
    p.add_argument("--input-norm", choices=["none", "per-image"], default="none",
                   help="per-image: standardise each image to zero mean and unit variance inside the network")
    p.add_argument("--label-smoothing", type=float, default=0.05)
    p.add_argument("--mixup", type=float, default=0.0,
                   help="alpha of mixup (blend each batch with a shuffled copy of itself, Beta(alpha, alpha) "
                        "weights, loss blended alike); 0: off")
    p.add_argument("--init-from", help="start from the weights of an exported ONNX model (read back as ml/parity.py "
                                      "does); with --epochs 0 it only re-calibrates and re-exports them")
    p.add_argument("--ood-quantile", type=float, default=0.995,
                   help="quantile of validation distances used as the refusal threshold")
    p.add_argument("--select", choices=["macroF1", "binaryAUC"], default="macroF1",
                   help="validation score that picks the exported epoch (binaryAUC: positive vs negative labels)")
    return p.parse_args()


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_by_group(items, fraction, seed):
    """Validation is carved from train by the manifest's group (brain) or patient (chest),
    so near-copies of one image never sit on both sides."""
    groups = sorted({it["group"] for it in items})
    rng = random.Random(seed)
    rng.shuffle(groups)
    val_groups = set(groups[: max(1, int(len(groups) * fraction))])
    train = [it for it in items if it["group"] not in val_groups]
    val = [it for it in items if it["group"] in val_groups]
    return train, val


def augment(x, gen):
    """Random affine (rotation, scale, shift), horizontal flip and contrast/brightness jitter,
    applied to a batch of normalised tensors on the device."""
    n = x.shape[0]
    dev = x.device
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(12)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.12
    tx = (torch.rand(n, generator=gen) * 2 - 1) * 0.08
    ty = (torch.rand(n, generator=gen) * 2 - 1) * 0.08
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], dim=1),
        torch.stack([sin * flip, cos, ty], dim=1),
    ], dim=1).to(dev)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = x.amin(dim=(2, 3), keepdim=True)
    x = F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background
    contrast = (1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.2).to(dev)
    bright = ((torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.2).to(dev)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * contrast + mean + bright


def augment_scanner(x, gen):
    """Site shift, on top of the standard augmentation: another hospital's radiographs differ
    in exposure curve (gamma), contrast, sharpness (detector and post-processing) and noise,
    and in how the film was framed (scale and crop). Works in grey levels 0..1 and returns
    normalised tensors."""
    n = x.shape[0]
    dev = x.device
    mean, std = SPEC["mean"], SPEC["std"]
    g = (x * std + mean).clamp(0, 1)
    # Exposure curve: gamma 0.6..1.6 (log-uniform), per image.
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * math.log(1.6)).to(dev)
    g = g.clamp(min=1e-4) ** gamma
    # Window: stretch or squeeze the grey range (contrast 0.6..1.4 around the mean, offset 0.1).
    c = (1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.4).to(dev)
    o = ((torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.1).to(dev)
    m = g.mean(dim=(2, 3), keepdim=True)
    g = ((g - m) * c + m + o).clamp(0, 1)
    # Optics: blur half the batch (Gaussian, sigma 0.3..1.5 px) or sharpen a quarter of it.
    sigma = 0.3 + torch.rand(n, generator=gen) * 1.2
    kind = torch.rand(n, generator=gen)
    radius = 3
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k1 = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    k2 = (k1.unsqueeze(2) * k1.unsqueeze(1)).unsqueeze(1).to(dev)  # [N, 1, k, k]
    padded = F.pad(g, (radius,) * 4, mode="replicate")
    blurred = F.conv2d(padded.view(1, n, *padded.shape[2:]), k2, groups=n).view_as(g)
    blur_sel = (kind < 0.5).view(n, 1, 1, 1).to(dev)
    sharp_sel = (kind > 0.75).view(n, 1, 1, 1).to(dev)
    g = torch.where(blur_sel, blurred, g)
    g = torch.where(sharp_sel, (g + 0.7 * (g - blurred)).clamp(0, 1), g)
    # Quantum noise: Gaussian, std 0..0.03 of full scale.
    noise = (torch.rand(n, 1, 1, 1, generator=gen) * 0.03).to(dev)
    g = (g + torch.randn(g.shape, generator=gen).to(dev) * noise).clamp(0, 1)
    x = (g - mean) / std
    # Framing: zoom in (crop) or out (pad with the border) by up to 20%, off-centre.
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.2
    tx = (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    ty = (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([1 / scale, zero, tx], 1), torch.stack([zero, 1 / scale, ty], 1)], 1).to(dev)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="border")


def augment_histogram(sums, gen, p):
    """Histogram shape: with probability p, give an image the grey-level histogram of another
    image of the batch (drawn from train/, either class; the label is kept). A site's tone curve
    can be any monotone shape, not only the gamma and linear window of augment_scanner;
    external/'s bright batch differs from train/ normals in histogram shape above all
    (docs/models/README.md), which the network must learn not to read as pneumonia.
    Classic histogram matching on the 766 grey levels of the channel sums, before
    preprocessing: each level goes to the partner's level at the same mid-rank quantile, a
    monotone look-up table, so equal pixels stay equal (no noise added) and no sort is needed."""
    n = sums.shape[0]
    levels = 766
    v = sums.reshape(n, -1).long()
    hist = torch.zeros(n, levels).scatter_add_(1, v, torch.ones(v.shape))
    cdf = hist.cumsum(1)
    cdf = cdf / cdf[:, -1:]
    mid = (cdf - hist / (2 * v.shape[1])).contiguous()
    partner = torch.randperm(n, generator=gen)
    lut = torch.searchsorted(cdf[partner].contiguous(), mid).clamp(max=levels - 1).float()
    matched = lut.gather(1, v).view(sums.shape)
    sel = (torch.rand(n, generator=gen) < p).view(n, 1, 1)
    return torch.where(sel, matched, sums.float())


@torch.no_grad()
def predict(model, images, device, batch=128, flip_tta=False):
    model.eval()
    logits, feats = [], []
    for i in range(0, len(images), batch):
        x = preprocess_batch(images[i:i + batch]).to(device)
        lo, fe, _ = flip_tta_forward(model, x, flip_tta)
        logits.append(lo.float().cpu())
        feats.append(fe.float().cpu())
    return torch.cat(logits), torch.cat(feats)


def fit_temperature(logits, labels):
    """Temperature scaling (Guo et al. 2017) on the validation logits."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp().item())


def gaussian_stats(feats, labels, n_classes):
    """Class means and a shared (tied) covariance of the penultimate features: the
    Mahalanobis out-of-distribution score of Lee et al. (2018)."""
    means = torch.stack([feats[labels == c].mean(0) for c in range(n_classes)])
    centred = feats - means[labels]
    cov = centred.T @ centred / len(feats)
    cov += torch.eye(cov.shape[0]) * 1e-3 * cov.diagonal().mean()
    return means, torch.linalg.inv(cov)


class WeightAverage:
    """Exponential moving average of the weights and BatchNorm statistics (Polyak averaging):
    smoother than the last step's weights under a high learning rate, so validation picks a
    better epoch. The decay warms up so early averages are not dominated by the random init."""

    def __init__(self, model, decay):
        self.decay = decay
        self.steps = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model):
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)


def sha256_of(paths):
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def main():
    args = parse_args()
    task = TASKS[args.task]
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    labels = task["labels"]
    t0 = time.time()

    items = load_split(args.data, "train", task)
    train_items, val_items = split_by_group(items, args.val_fraction, args.seed)
    test_items = load_split(args.data, "test", task)
    print(f"[{args.task}] train {len(train_items)} val {len(val_items)} test {len(test_items)} "
          f"(loaded in {time.time() - t0:.0f}s) on {device}", flush=True)

    def stack(its):
        return torch.stack([it["pixels"] for it in its]), torch.tensor([it["label"] for it in its])

    x_train, y_train = stack(train_items)
    x_val, y_val = stack(val_items)
    x_test, y_test = stack(test_items)

    counts = torch.bincount(y_train, minlength=len(labels)).float()
    # Class balancing: weight the loss by inverse class frequency.
    class_weights = (counts.sum() / (len(labels) * counts)).to(device)

    model = ImagemedixNet(len(labels), width=args.width, input_norm=args.input_norm == "per-image").to(device)
    if args.init_from:
        from parity import rebuild  # noqa: E402  (only needed for this mode)
        model = rebuild(args.init_from).model.to(device)
        print(f"[{args.task}] weights from {args.init_from}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{args.task}] parameters: {n_params}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(x_train) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=max(1, args.epochs),
                                                steps_per_epoch=steps_per_epoch, pct_start=0.2)
    gen = torch.Generator().manual_seed(args.seed)
    mix_rng = np.random.default_rng(args.seed)
    average = WeightAverage(model, args.ema) if args.ema > 0 else None
    # The network that is validated each epoch: the weight average, or the model itself.
    evaluated = ImagemedixNet(len(labels), width=args.width, input_norm=args.input_norm == "per-image").to(device) if average else model
    best = {"score": -1.0, "epoch": 0, "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    history = []
    for epoch in range(args.epochs):
        model.train()
        te = time.time()
        perm = torch.randperm(len(x_train), generator=gen)
        total_loss = 0.0
        stopped = False
        for i in range(0, len(perm), args.batch):
            if args.stop_file and os.path.exists(args.stop_file):
                stopped = True
                break
            idx = perm[i:i + args.batch]
            x = x_train[idx]
            if args.hist_match > 0:
                x = augment_histogram(x, gen, args.hist_match)
            x = preprocess_batch(x).to(device)
            x = augment(x, gen)
            if args.augment == "scanner":
                x = augment_scanner(x, gen)
            y = y_train[idx].to(device)
            if args.mixup > 0:
                # Mixup: the network sees blends and must answer in proportion, which softens
                # over-confident decision edges (the calibration gap on external/).
                lam = float(mix_rng.beta(args.mixup, args.mixup))
                partner = torch.randperm(len(idx), generator=gen)
                x = lam * x + (1 - lam) * x[partner]
                logits, _, _ = model(x)
                loss = (lam * F.cross_entropy(logits, y, weight=class_weights, label_smoothing=args.label_smoothing)
                        + (1 - lam) * F.cross_entropy(logits, y[partner], weight=class_weights,
                                                      label_smoothing=args.label_smoothing))
            else:
                logits, _, _ = model(x)
                loss = F.cross_entropy(logits, y, weight=class_weights, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if average:
                average.update(model)
            total_loss += loss.item() * len(idx)
        if stopped:
            print(f"[{args.task}] stopped by {args.stop_file} during epoch {epoch + 1}; exporting epoch {best['epoch']}",
                  flush=True)
            break
        if average:
            evaluated.load_state_dict(average.state)
        val_logits, _ = predict(evaluated, x_val, device, flip_tta=args.flip_tta)
        rep = metrics_report(val_logits.softmax(1).numpy(), y_val.numpy(), labels)
        score = rep["macroF1"]
        if args.select == "binaryAUC" and task.get("positiveLabels"):
            pos = [labels.index(l) for l in task["positiveLabels"]]
            score = binary_auc(val_logits.softmax(1).numpy()[:, pos].sum(1), np.isin(y_val.numpy(), pos))
        history.append({"epoch": epoch + 1, "loss": total_loss / len(x_train), "valAccuracy": rep["accuracy"],
                        "valMacroF1": score, "seconds": round(time.time() - te, 1)})
        print(f"[{args.task}] epoch {epoch + 1}/{args.epochs} loss {total_loss / len(x_train):.4f} "
              f"val acc {rep['accuracy']:.4f} f1 {score:.4f} ({time.time() - te:.0f}s)", flush=True)
        if score > best["score"]:
            best = {"score": score, "epoch": epoch + 1,
                    "state": {k: v.detach().clone() for k, v in evaluated.state_dict().items()}}
        elif epoch + 1 - best["epoch"] >= args.patience:
            print(f"[{args.task}] early stop: no validation gain for {args.patience} epochs", flush=True)
            break
        if (time.time() - t0) / 60 > args.max_minutes:
            print(f"[{args.task}] time budget reached", flush=True)
            break

    model.load_state_dict(best["state"])
    model = model.cpu().eval()
    device = torch.device("cpu")
    tta = args.flip_tta
    val_logits, val_feats = predict(model, x_val, device, flip_tta=tta)
    temperature = fit_temperature(val_logits, y_val)
    train_logits, train_feats = predict(model, x_train, device, flip_tta=tta)
    means, precision = gaussian_stats(train_feats, y_train, len(labels))

    wrapper = ExportWrapper(model, means, precision, flip_tta=tta).eval()
    with torch.no_grad():
        _, _, _, val_ood = wrapper(preprocess_batch(x_val))
    # Refusal threshold: the 99.5th percentile of validation distances, so about 0.5% of valid
    # images are refused by this test; the Node side adds input checks (blank, colour photos).
    ood_threshold = float(np.quantile(val_ood.numpy(), args.ood_quantile))

    val_probs = (val_logits / temperature).softmax(1).numpy()
    val_rep = metrics_report(val_probs, y_val.numpy(), labels)
    decision = {}
    if task.get("positiveLabels"):
        pos = [labels.index(l) for l in task["positiveLabels"]]
        p_pos = val_probs[:, pos].sum(1)
        is_pos = np.isin(y_val.numpy(), pos)
        # Screening: pick the threshold with the best validation accuracy among those that keep
        # validation sensitivity >= 0.97, since a missed pneumonia costs more than a recall.
        best_t, best_acc = 0.5, -1
        for t in np.linspace(0.05, 0.95, 91):
            pred = p_pos >= t
            sens = (pred & is_pos).sum() / max(1, is_pos.sum())
            acc = (pred == is_pos).mean()
            if sens >= 0.97 and acc > best_acc:
                best_t, best_acc = float(t), acc
        decision = {"positiveLabels": task["positiveLabels"], "positiveThreshold": round(best_t, 3)}

    test_logits, _ = predict(model, x_test, device, flip_tta=tta)
    test_rep = metrics_report((test_logits / temperature).softmax(1).numpy(), y_test.numpy(), labels)
    print(f"[{args.task}] T={temperature:.3f} ood threshold {ood_threshold:.2f} "
          f"val acc {val_rep['accuracy']:.4f} test acc {test_rep['accuracy']:.4f} "
          f"test macroF1 {test_rep['macroF1']:.4f} test ece {test_rep['ece']:.4f}", flush=True)

    os.makedirs(args.out, exist_ok=True)
    model_id = args.task
    # The PyTorch weights, for fine-tuning later (ml/runs/ is not committed; the ONNX file is).
    os.makedirs(os.path.join(ROOT, "ml", "runs"), exist_ok=True)
    torch.save({"state": model.state_dict(), "width": args.width, "labels": labels},
               os.path.join(ROOT, "ml", "runs", f"{model_id}.pt"))
    onnx_path = os.path.join(args.out, f"{model_id}.onnx")
    dummy = preprocess_batch(x_val[:2])
    # Newer torch defaults to the dynamo exporter; the TorchScript one keeps the graph that
    # ml/parity.py reads back (Conv, Gemm and the class-mean Sub with their initializers).
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(wrapper, dummy, onnx_path, opset_version=17, **legacy,
                      input_names=["input"], output_names=["logits", "features", "cam", "ood_distance"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"},
                                    "cam": {0: "batch"}, "ood_distance": {0: "batch"}})
    with open(onnx_path, "rb") as f:
        onnx_sha = hashlib.sha256(f.read()).hexdigest()

    manifest = {
        "id": model_id,
        "name": task["name"],
        "version": args.version,
        "task": task["kind"],
        "file": f"{model_id}.onnx",
        "sha256": onnx_sha,
        "labels": labels,
        "input": {"name": "input", "width": SPEC["width"], "height": SPEC["height"], "channels": SPEC["channels"],
                  "layout": "NCHW", "dtype": "float32"},
        "preprocessing": SPEC,
        # Mirrored-image averaging is inside the ONNX graph; recorded so the parity check rebuilds it.
        "testTimeAugmentation": {"horizontalFlip": tta},
        "outputs": {"logits": "raw class scores, divide by temperature before softmax",
                    "features": "global-average-pooled penultimate features",
                    "cam": "class activation maps (Grad-CAM equivalent for a GAP + linear head), one per label",
                    "ood_distance": "minimum class-conditional Mahalanobis distance of the features"},
        "calibration": {"method": "temperature scaling on validation", "temperature": round(temperature, 5)},
        "refusal": {"method": "Mahalanobis distance of penultimate features (tied covariance)",
                    "oodThreshold": round(ood_threshold, 4), "quantileOfValidation": args.ood_quantile,
                    "validationDistances": {f"q{int(q * 1000)}": round(float(np.quantile(val_ood.numpy(), q)), 3)
                                            for q in (0.5, 0.9, 0.99, 0.995, 0.999, 1.0)}},
        "decision": decision,
        "training": {
            "data": {"source": task["source"], "licence": task["licence"],
                     "sha256": sha256_of([it["path"] for it in items]),
                     "trainCount": len(train_items), "validationCount": len(val_items),
                     "testCount": len(test_items),
                     "classCounts": {l: int(c) for l, c in zip(labels, counts.tolist())}},
            "recipe": {"initialisedFrom": args.init_from and os.path.basename(args.init_from),
                       "architecture": f"ImagemedixNet (compact VGG/ResNet-style CNN, width {args.width})",
                       "parameters": n_params, "optimizer": "AdamW, one-cycle LR",
                       "lr": args.lr, "batch": args.batch, "epochsRun": len(history), "bestEpoch": best["epoch"],
                       "augmentation": "affine (rotation 12 deg, scale 12%, shift 8%), horizontal flip, contrast/brightness 20%"
                       + ("; site shift: gamma 0.6-1.6, contrast 0.6-1.4, Gaussian blur or sharpening, noise up to 3%, "
                          "crop/zoom 20% with 10% shift" if args.augment == "scanner" else "")
                       + (f"; histogram shape: with probability {args.hist_match} a training image's grey-level "
                          "histogram matched (monotone grey-level map) to another random train/ image of the batch, "
                          "either class, label kept" if args.hist_match > 0 else ""),
                       "selection": args.select,
                       "classBalancing": "inverse-frequency class weights", "labelSmoothing": args.label_smoothing,
                       "mixup": args.mixup or None,
                       "inputNorm": args.input_norm,
                       "weightAverage": args.ema or None, "flipTTA": tta,
                       "seed": args.seed, "torch": torch.__version__, "device": str(device)},
            "history": history,
            "minutes": round((time.time() - t0) / 60, 1),
            # Exactly how this run was started, for the model card's reproduce section.
            "command": "/usr/bin/python3 ml/train.py " + " ".join(sys.argv[1:]),
        },
        "metrics": {"validation": val_rep, "test": test_rep},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with open(os.path.join(args.out, f"{model_id}.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"[{args.task}] wrote {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    main()
