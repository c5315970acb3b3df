"""Pieces shared by training, export and the parity check: task definitions, the one
preprocessing spec (ml/preprocessing.json), the network, and the metrics."""
import csv
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "ml", "preprocessing.json")) as _f:
    SPEC = json.load(_f)

TASKS = {
    "brain-mri": {
        "name": "Brain MRI tumour classifier",
        "kind": "brain-mri",
        "labels": ["glioma", "meningioma", "notumor", "pituitary"],
        "groupColumn": "group",
        "source": "Nickparvar, M. Brain Tumor MRI Dataset (Kaggle), leakage-free 224 px split",
        "licence": "CC0 1.0",
    },
    "chest-xray": {
        "name": "Chest X-ray pneumonia classifier",
        "kind": "chest-xray",
        "labels": ["normal", "bacterial", "viral"],
        "positiveLabels": ["bacterial", "viral"],
        "groupColumn": "patient",
        "source": "Kermany, Zhang, Goldbaum (2018), Mendeley Data v2, doi:10.17632/rscbjbr9sj.2",
        "licence": "CC BY 4.0",
    },
}


def load_pixels(path):
    """Decode -> 8-bit RGB -> fill-resize to the spec size. Returns R+G+B per pixel as an
    int16 tensor, so the grayscale mean (sum / 3) stays exact and memory stays small."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (SPEC["width"], SPEC["height"]):
            im = im.resize((SPEC["width"], SPEC["height"]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.int16)
    return torch.from_numpy(a.sum(axis=2, dtype=np.int16).copy())


def preprocess_batch(rgb_sums):
    """[N, H, W] channel sums -> normalised [N, 1, H, W] float32, exactly as src/ml/preprocess.ts."""
    gray = rgb_sums.float() / 3.0
    x = (gray / 255.0 - SPEC["mean"]) / SPEC["std"]
    return x.unsqueeze(1)


def load_split(data_dir, split, task):
    items = []
    labels = task["labels"]
    with open(os.path.join(data_dir, "MANIFEST.tsv")) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["split"] != split or row["class"] not in labels:
                continue
            path = os.path.join(data_dir, split, row["class"], row["file"])
            if not os.path.exists(path):
                continue
            items.append({"path": path, "label": labels.index(row["class"]),
                          "group": row[task["groupColumn"]], "pixels": load_pixels(path)})
    return items


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Stage(nn.Module):
    """Two 3x3 convolutions with a projected residual connection."""

    def __init__(self, cin, cout):
        super().__init__()
        self.a = conv_bn(cin, cout)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.b(self.a(x)) + self.skip(x))


class ImagemedixNet(nn.Module):
    """Compact CNN for 224 px one-channel images: two strided stem convolutions (224 -> 56),
    three residual stages (56 -> 28 -> 14), global average pooling and a linear head, so the
    class activation map of the last stage is exact (CAM / Grad-CAM for a GAP + linear head)."""

    def __init__(self, n_classes, width=32, input_norm=False):
        super().__init__()
        w = width
        # Per-image standardisation inside the graph: every image enters with zero mean and
        # unit variance, whatever the exposure and contrast its site's scanner gave it. It is
        # part of the ONNX file, so serving needs no preprocessing change.
        self.input_norm = input_norm
        self.stem = nn.Sequential(conv_bn(1, w // 2 + 8, stride=2), conv_bn(w // 2 + 8, w, stride=2))
        self.stage1 = Stage(w, int(w * 1.5))
        self.stage2 = Stage(int(w * 1.5), w * 3)
        self.stage3 = Stage(w * 3, w * 6)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(w * 6, n_classes)

    def forward(self, x):
        if self.input_norm:
            centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
            x = centred / torch.sqrt((centred * centred).mean(dim=(1, 2, 3), keepdim=True) + 1e-4)
        x = self.stem(x)
        x = self.stage1(x)
        x = self.stage2(F.max_pool2d(x, 2))
        fmap = self.stage3(F.max_pool2d(x, 2))
        feats = fmap.mean(dim=(2, 3))
        logits = self.head(self.dropout(feats))
        return logits, feats, fmap


def flip_tta_forward(model, x, flip_tta):
    """The network's answer for a batch, optionally averaged with its answer for the mirrored
    images (test-time augmentation). The last feature maps are averaged after flipping the
    mirrored ones back, so logits, pooled features and activation maps stay consistent: the
    head is linear and the pooling an average, so logits(avg map) = avg(logits)."""
    if not flip_tta:
        return model(x)
    n = x.shape[0]
    logits, feats, fmap = model(torch.cat([x, x.flip(3)]))
    return ((logits[:n] + logits[n:]) / 2, (feats[:n] + feats[n:]) / 2,
            (fmap[:n] + fmap[n:].flip(3)) / 2)


class ExportWrapper(nn.Module):
    """What the ONNX file computes: logits, pooled features, per-class activation maps and
    the Mahalanobis out-of-distribution distance, all from one forward pass (of the image and,
    with flip_tta, its mirror image)."""

    def __init__(self, model, means, precision, flip_tta=False):
        super().__init__()
        self.model = model
        self.flip_tta = flip_tta
        self.register_buffer("means", means.float())
        self.register_buffer("precision", precision.float())

    def forward(self, x):
        logits, feats, fmap = flip_tta_forward(self.model, x, self.flip_tta)
        cam = torch.einsum("kc,nchw->nkhw", self.model.head.weight, fmap) + self.model.head.bias.view(1, -1, 1, 1)
        diff = feats.unsqueeze(1) - self.means.unsqueeze(0)            # [N, K, D]
        d2 = torch.einsum("nkd,de,nke->nk", diff, self.precision, diff)  # [N, K]
        ood = d2.min(dim=1).values.clamp(min=0).sqrt()
        return logits, feats, cam, ood


def binary_auc(scores, positive):
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = scores.argsort()
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks of ties
    for v in np.unique(scores):
        m = scores == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metrics_report(probs, labels, names, bins=15):
    pred = probs.argmax(1)
    acc = float((pred == labels).mean())
    per_class, f1s, aucs = {}, [], []
    for c, name in enumerate(names):
        tp = int(((pred == c) & (labels == c)).sum())
        fp = int(((pred == c) & (labels != c)).sum())
        fn = int(((pred != c) & (labels == c)).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        auc = binary_auc(probs[:, c], labels == c)
        per_class[name] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "auc": round(auc, 4)}
        f1s.append(f1)
        aucs.append(auc)
    conf = probs.max(1)
    ece = 0.0
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs((pred[m] == labels[m]).mean() - conf[m].mean())
    matrix = [[int(((labels == i) & (pred == j)).sum()) for j in range(len(names))] for i in range(len(names))]
    return {"accuracy": round(acc, 4), "macroF1": round(float(np.mean(f1s)), 4),
            "auc": round(float(np.nanmean(aucs)), 4), "ece": round(float(ece), 4),
            "perClass": per_class, "confusionMatrix": matrix, "n": int(len(labels))}
