"""Measure whether burnt-in text (timestamps, kV readouts) in chest X-ray corners is a shortcut
the served chest model uses: text -> pneumonia (issue 10; docs/models/README.md, "Chest external/
ECE"). Two of the four external/ normals the model called pneumonia most confidently carried
such text, seen by eye; if train/ holds it mostly on pneumonias, the model could have learnt it
and a site whose films all carry it would lose specificity. Results: docs/models/README.md, "Corner
text is not a shortcut". Nothing is written to the repository; run from the repository root.

    /usr/bin/python3 ml/measure_overlays.py detect --out <dir>   # text per split and class
    /usr/bin/python3 ml/measure_overlays.py sheet --out <dir>    # 30 flagged + 30 not, to check by eye
    /usr/bin/python3 ml/measure_overlays.py occlude --out <dir>  # served scores, as is vs corners painted over
    /usr/bin/python3 ml/measure_overlays.py paste --out <dir>    # served scores, as is vs train/ text pasted in
    /usr/bin/python3 ml/measure_overlays.py brightness --out <dir>  # served scores under global/central brightness edits
    /usr/bin/python3 ml/measure_overlays.py texture --out <dir>     # tone and sharpness figures per split and class
    /usr/bin/python3 ml/measure_overlays.py sharpness --out <dir>   # served scores under tone/sharpness edits (after texture)
    /usr/bin/python3 ml/measure_overlays.py occlusion-map --out <dir>  # occlusion maps beside served heatmaps, a contact sheet

Detector (numpy only): the white top-hat of the image (gray minus its 5 x 5 grey opening) keeps
strokes thinner than 5 px that are brighter than their surroundings; a line of them in a corner
box (24 x 80 px), against the image's side edge, is text written by the modality (a timestamp,
"KV59", mAs, "A-P"). The lead "R" marker, exposed with the film and seen in every class, is
taller than it is wide and not flush with the edge, so it is not counted (text_lines). A
detector for the letters themselves was tried and dropped: at 224 px small R markers and rib
ends in the outer band look alike, and no threshold kept both precision and recall on a sheet.

Occlusion: each test/ and external/ image is scored by the served pipeline
(scripts/score-images.ts: int8 model, flip averaging; temperature and default threshold from
models/chest-xray.json) as a lossless PNG of its decoded pixels, and again with the four corner
boxes, or only the detected text lines, filled by diffusion from their border (fill), so only
those pixels change. Figures count every image the model scored, including those the
out-of-distribution check would refuse, so they differ slightly from the cards'. Paste is the
converse: the strokes of text found on train/ images moved onto test/ and external/ images that
have none.

Brightness (issue 10's next lead; docs/models/README.md, "Central brightness is not the cause"):
the 9 external/ normals with text are one acquisition batch, brighter than the other external/
normals, 7 of them false positives. Each test/ and external/ image is scored as is and edited:
a global gamma, a smooth centre-weighted bump, and a histogram match to train/ normals. If
brightness caused the calls, darkening the batch would turn them back and brightening test/
normals would raise P(pneumonia).

Tone and sharpness (docs/models/README.md, "The bright batch's tone curve, not its sharpness"):
brightness was not it, so is the batch's tone curve or an edge enhancement? `texture` measures
histogram shape and detail bands on every image; `sharpness` edits test/ and external/ towards
train/ normals (blur, local contrast, histogram) and, conversely, normals towards the batch, and
scores them as served; `occlusion-map` slides a diffused patch over the batch's false positives
and a few others and draws where P(pneumonia) drops beside the heatmap the server shows.
"""
import argparse
import json
import os
import random
import subprocess

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "datasets", "chest-xray")
CLASSES = ("normal", "bacterial", "viral")
SPLITS = ("train", "test", "external")
CORNER_H, CORNER_W = 24, 80
EDGE = 8


def gray(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32).mean(axis=2)


def _filter(a, k, fn):
    p = k // 2
    w = np.lib.stride_tricks.sliding_window_view(np.pad(a, p, mode="edge"), (k, k))
    return fn(w, axis=(2, 3))


def tophat(g, k=5):
    return g - _filter(_filter(g, k, np.min), k, np.max)


def components(mask):
    """4-connected components of a boolean array: list of (ys, xs) arrays."""
    seen = np.zeros_like(mask)
    out = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, ys, xs = [(y0, x0)], [], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            ys.append(y)
            xs.append(x)
            for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        out.append((np.array(ys), np.array(xs)))
    return out


def corner_boxes(h=224, w=224):
    """(name, row slice, column slice) of the four corner boxes."""
    return [
        ("top-left", slice(0, CORNER_H), slice(0, CORNER_W)),
        ("top-right", slice(0, CORNER_H), slice(w - CORNER_W, w)),
        ("bottom-left", slice(h - CORNER_H, h), slice(0, CORNER_W)),
        ("bottom-right", slice(h - CORNER_H, h), slice(w - CORNER_W, w)),
    ]


def text_lines(g, th, min_tophat):
    """Corners holding a line of small bright strokes, with the box (y0, y1, x0, x1) of the line.

    Characters 5-7 px tall blur into each other at 224 px, so a line is found as one blob: the
    top-hat mask joined across 2-px gaps along the row, 3-12 px tall, at least 8 px and 1.6
    heights wide, with 12 or more stroke pixels filling 25-85% of its box (a wire fills less).
    A blob touching the inner edge of the box is something larger cut by it (a marker letter, a
    bone), not corner text. The modality writes its text against the image's side edge (a
    timestamp or kV flush right, "A-P" flush left), so a line must start or end within
    EDGE px of it and lie within 2 * EDGE px of the top or bottom: bone edges and lead wires
    inside the box do not."""
    found = []
    for name, rs, cs in corner_boxes(*g.shape):
        m = th[rs, cs] >= min_tophat
        joined = np.lib.stride_tricks.sliding_window_view(np.pad(m, ((0, 0), (1, 1))), 3, axis=1).any(axis=2)
        inner_row = 0 if rs.start > 0 else m.shape[0] - 1
        inner_col = 0 if cs.start > 0 else m.shape[1] - 1
        for ys, xs in components(joined):
            if (ys == inner_row).any() or (xs == inner_col).any():
                continue
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            hh, ww = y1 - y0, x1 - x0
            strokes = int(m[y0:y1, x0:x1].sum())
            gy0, gy1, gx0, gx1 = rs.start + y0, rs.start + y1, cs.start + x0, cs.start + x1
            at_side = gx0 <= EDGE if cs.start == 0 else gx1 >= g.shape[1] - EDGE
            at_end = gy0 <= 2 * EDGE if rs.start == 0 else gy1 >= g.shape[0] - 2 * EDGE
            if not (at_side and at_end):
                continue
            if 3 <= hh <= 12 and ww >= max(8, 1.6 * hh) and strokes >= 12 and 0.25 <= strokes / (hh * ww) <= 0.85:
                found.append((name, tuple(int(v) for v in (rs.start + y0, rs.start + y1, cs.start + x0, cs.start + x1))))
    return found


def detect(g, min_tophat=40):
    return {"text": text_lines(g, tophat(g), min_tophat)}


def images(split):
    for cls in CLASSES:
        d = os.path.join(DATA, split, cls)
        for f in sorted(os.listdir(d)):
            yield cls, os.path.join(d, f)


def run_detect(out, min_tophat):
    """Detect on every image of every split; write detections.json and print prevalence."""
    rows = []
    for split in SPLITS:
        for cls, path in images(split):
            rows.append({"split": split, "class": cls, "path": path, **detect(gray(path), min_tophat)})
    with open(os.path.join(out, "detections.json"), "w") as f:
        json.dump(rows, f)
    print_prevalence(rows)


def print_prevalence(rows):
    print("| split | class | n | with corner text |")
    print("|---|---|---:|---:|")
    for split in SPLITS:
        for cls in CLASSES:
            r = [x for x in rows if x["split"] == split and x["class"] == cls]
            t = sum(1 for x in r if x["text"])
            print(f"| {split} | {cls} | {len(r)} | {t} ({t / len(r):.1%}) |")


def contact_sheet(rows, path, zoom=3, per_column=10):
    """The four corner boxes of each image side by side, detected text boxed; a number per row
    to note the eye's verdict against."""
    tile_h, tile_w = CORNER_H * zoom + 4, 4 * (CORNER_W * zoom + 4) + 40
    cols = (len(rows) + per_column - 1) // per_column
    sheet = Image.new("L", (cols * tile_w, per_column * tile_h), 128)
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(rows):
        g = gray(r["path"])
        ox, oy = (i // per_column) * tile_w, (i % per_column) * tile_h
        draw.text((ox + 2, oy + 4), f"{i}{' T' if r['text'] else ''}", fill=255)
        for j, (name, rs, cs) in enumerate(corner_boxes(*g.shape)):
            crop = Image.fromarray(g[rs, cs].astype(np.uint8)).resize((CORNER_W * zoom, CORNER_H * zoom), Image.NEAREST)
            x = ox + 40 + j * (CORNER_W * zoom + 4)
            sheet.paste(crop, (x, oy + 2))
            for corner, (y0, y1, x0, x1) in r["text"]:
                if corner == name:
                    bx, by = x + (x0 - cs.start) * zoom, oy + 2 + (y0 - rs.start) * zoom
                    draw.rectangle((bx - 2, by - 2, bx + (x1 - x0) * zoom + 1, by + (y1 - y0) * zoom + 1), outline=255)
                    draw.rectangle((bx - 1, by - 1, bx + (x1 - x0) * zoom, by + (y1 - y0) * zoom), outline=0)
    sheet.save(path)


def run_sheet(out, seed):
    """30 flagged and 30 unflagged images drawn from detections.json, shuffled, on three sheets
    (check-0..2.png), listed in check.json, to be judged by eye."""
    with open(os.path.join(out, "detections.json")) as f:
        rows = json.load(f)
    rng = random.Random(seed)
    chosen = rng.sample([r for r in rows if r["text"]], 30) + rng.sample([r for r in rows if not r["text"]], 30)
    rng.shuffle(chosen)
    with open(os.path.join(out, "check.json"), "w") as f:
        json.dump(chosen, f, indent=1)
    for k in range(3):
        contact_sheet(chosen[k * 20:(k + 1) * 20], os.path.join(out, f"check-{k}.png"), per_column=20)


def fill(g, mask, iterations=300):
    """Paint the masked pixels from their surroundings: start from the median of a 3 px ring
    around the mask, then repeatedly set each masked pixel to the mean of its four neighbours
    (the image border repeats), so the fill is a smooth continuation of the background."""
    out = g.copy()
    ring = _filter(mask.astype(np.uint8), 7, np.max).astype(bool) & ~mask
    out[mask] = np.median(g[ring]) if ring.any() else g.mean()
    for _ in range(iterations):
        p = np.pad(out, 1, mode="edge")
        avg = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4
        out[mask] = avg[mask]
    return out


def masks(g, text, pad=2):
    """The two occlusions: every corner box (fixed, whatever it holds) and the detected text
    lines grown by `pad` px (None when none was found)."""
    corners = np.zeros(g.shape, dtype=bool)
    for _, rs, cs in corner_boxes(*g.shape):
        corners[rs, cs] = True
    if not text:
        return corners, None
    found = np.zeros(g.shape, dtype=bool)
    for _, (y0, y1, x0, x1) in text:
        found[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = True
    return corners, found


def save(g, path):
    Image.fromarray(np.clip(np.rint(g), 0, 255).astype(np.uint8)).convert("RGB").save(path)


def served_scores(paths, work, name, heatmaps=None):
    """P(pneumonia) of each path as served: scripts/score-images.ts, then the manifest's
    temperature. Input-check refusals (no logits) come back as None. With heatmaps (a folder),
    the served heatmap PNG of the nth path is written there as <n>.png."""
    lst, out = os.path.join(work, f"{name}.txt"), os.path.join(work, f"{name}.jsonl")
    with open(lst, "w") as f:
        f.write("\n".join(paths) + "\n")
    extra = ["--heatmaps", heatmaps] if heatmaps else []
    subprocess.run(["npx", "tsx", "scripts/score-images.ts", "--model", "chest-xray", "--list", lst, "--out", out, *extra],
                   cwd=ROOT, check=True)
    with open(os.path.join(ROOT, "models", "chest-xray.json")) as f:
        temperature = json.load(f)["calibration"]["temperature"]
    scores = []
    with open(out) as f:
        for line in f:
            r = json.loads(line)
            if r["logits"] is None:
                scores.append(None)
                continue
            z = np.array(r["logits"]) / temperature
            e = np.exp(z - z.max())
            scores.append(float(1 - e[0] / e.sum()))
    return scores


def auc(scores, positive):
    s, y = np.asarray(scores), np.asarray(positive)
    pos, neg = s[y], s[~y]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def point(scores, positive, threshold):
    s, y = np.asarray(scores), np.asarray(positive)
    said = s >= threshold
    return {"sensitivity": said[y].mean(), "specificity": (~said[~y]).mean(), "accuracy": (said == y).mean()}


def patients(split):
    """Patient of each image path of test/ (MANIFEST.tsv) or external/ (EXTERNAL.tsv)."""
    out = {}
    if split == "external":
        with open(os.path.join(DATA, "EXTERNAL.tsv")) as f:
            next(f)
            for line in f:
                p, _, _, who = line.rstrip("\n").split("\t")
                out[os.path.normpath(os.path.join(DATA, p))] = who
    else:
        with open(os.path.join(DATA, "MANIFEST.tsv")) as f:
            next(f)
            for line in f:
                sp, cls, name, _, who = line.rstrip("\n").split("\t")
                if sp == split:
                    out[os.path.normpath(os.path.join(DATA, sp, cls, name))] = who
    return out


def run_occlude(out, draws=2000, seed=20261207):
    """Score external/ and test/ as is and with the corners (or the detected text) painted
    over; print the shift in P(pneumonia) by group, and AUC and the `general` point as is vs
    masked with a paired bootstrap over patients."""
    with open(os.path.join(out, "detections.json")) as f:
        rows = [r for r in json.load(f) if r["split"] in ("external", "test")]
    with open(os.path.join(ROOT, "models", "chest-xray.json")) as f:
        manifest = json.load(f)
    decision = manifest["decision"]
    threshold = decision["operatingPoints"][decision["defaultOperatingPoint"]]["threshold"]
    work = os.path.join(out, "occlusion")
    os.makedirs(work, exist_ok=True)
    lists = {"as is": [], "corners": [], "text": []}
    for i, r in enumerate(rows):
        with Image.open(r["path"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        g = rgb.astype(np.float32).mean(axis=2)
        plain = os.path.join(work, f"{i}-as-is.png")
        Image.fromarray(rgb).save(plain)
        corners, found = masks(g, [(c, tuple(b)) for c, b in r["text"]])
        masked = os.path.join(work, f"{i}-corners.png")
        save(fill(g, corners), masked)
        lists["as is"].append(plain)
        lists["corners"].append(masked)
        if found is None:
            lists["text"].append(plain)
        else:
            masked = os.path.join(work, f"{i}-text.png")
            save(fill(g, found), masked)
            lists["text"].append(masked)
    scores = {name: served_scores(paths, work, name.replace(" ", "-")) for name, paths in lists.items()}
    with open(os.path.join(out, "occlusion.json"), "w") as f:
        json.dump({"rows": rows, "scores": scores, "threshold": threshold}, f)
    report(rows, scores, threshold, draws, seed)


def report(rows, scores, threshold, draws, seed):
    rng = np.random.default_rng(seed)
    for split in ("external", "test"):
        idx = [i for i, r in enumerate(rows) if r["split"] == split and all(scores[v][i] is not None for v in scores)]
        refused = sum(1 for r in rows if r["split"] == split) - len(idx)
        print(f"\n## {split}: {len(idx)} images scored ({refused} refused by an input check in some variant)")
        print("| group | n | mean P as is | corners masked: mean change | text masked: mean change | called pneumonia as is / corners / text |")
        print("|---|---:|---:|---:|---:|---|")
        for cls in CLASSES:
            for has in (True, False):
                g = [i for i in idx if rows[i]["class"] == cls and bool(rows[i]["text"]) == has]
                if not g:
                    continue
                a = np.array([scores["as is"][i] for i in g])
                c = np.array([scores["corners"][i] for i in g])
                t = np.array([scores["text"][i] for i in g])
                calls = " / ".join(str(int((x >= threshold).sum())) for x in (a, c, t))
                print(f"| {cls}, {'text' if has else 'no text'} | {len(g)} | {a.mean():.3f} | {(c - a).mean():+.3f} "
                      f"(median {np.median(c - a):+.3f}) | {(t - a).mean():+.3f} | {calls} |")
        y = np.array([rows[i]["class"] != "normal" for i in idx])
        who = patients(split)
        pid = [who[os.path.normpath(rows[i]["path"])] for i in idx]
        groups = {}
        for k, p in enumerate(pid):
            groups.setdefault(p, []).append(k)
        members = list(groups.values())
        print(f"\n| figure ({split}, threshold {threshold}) | as is | corners masked | text masked | corners - as is, "
              f"95% patient bootstrap ({len(members)} patients, {draws} draws) |")
        print("|---|---:|---:|---:|---|")
        s = {v: np.array([scores[v][i] for i in idx]) for v in scores}
        figures = {
            "AUC": lambda sc, k: auc(sc[k], y[k]),
            "sensitivity": lambda sc, k: point(sc[k], y[k], threshold)["sensitivity"],
            "specificity": lambda sc, k: point(sc[k], y[k], threshold)["specificity"],
            "accuracy": lambda sc, k: point(sc[k], y[k], threshold)["accuracy"],
        }
        boot = []
        for _ in range(draws):
            k = np.concatenate([members[j] for j in rng.integers(0, len(members), len(members))])
            boot.append(k)
        everyone = np.arange(len(idx))
        for name, fn in figures.items():
            base = {v: fn(s[v], everyone) for v in s}
            diffs = np.array([fn(s["corners"], k) - fn(s["as is"], k) for k in boot])
            lo, hi = np.percentile(diffs, [2.5, 97.5])
            print(f"| {name} | {base['as is']:.4f} | {base['corners']:.4f} | {base['text']:.4f} | "
                  f"{base['corners'] - base['as is']:+.4f} ({lo:+.4f} to {hi:+.4f}) |")


def run_paste(out, seed=20261207, donors=40):
    """The converse test: copy the bright strokes of detected corner text from train/ images
    (text on dark background, so a pixel-wise max moves only the strokes) into the same place
    on test/ and external/ images that have none, and score both. A model that reads
    text -> pneumonia raises P(pneumonia) of the normals."""
    with open(os.path.join(out, "detections.json")) as f:
        rows = json.load(f)
    rng = random.Random(seed)
    sources = []
    for r in rows:
        if r["split"] != "train" or not r["text"]:
            continue
        g = gray(r["path"])
        for corner, (y0, y1, x0, x1) in r["text"]:
            y0, x0 = max(0, y0 - 1), max(0, x0 - 1)
            box = g[y0:y1 + 1, x0:x1 + 1]
            if np.median(box) < 60:
                sources.append((r["class"], corner, (y0, x0), box))
    rng.shuffle(sources)
    sources = sources[:donors]
    print(f"{len(sources)} donor text lines from train/ ({', '.join(f'{c} {sum(1 for s in sources if s[0] == c)}' for c in CLASSES)})")
    targets = [r for r in rows if r["split"] in ("external", "test") and not r["text"]]
    work = os.path.join(out, "paste")
    os.makedirs(work, exist_ok=True)
    plain, pasted = [], []
    for i, r in enumerate(targets):
        with Image.open(r["path"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        g = rgb.astype(np.float32).mean(axis=2)
        _, _, (y0, x0), box = sources[rng.randrange(len(sources))]
        out_g = g.copy()
        out_g[y0:y0 + box.shape[0], x0:x0 + box.shape[1]] = np.maximum(g[y0:y0 + box.shape[0], x0:x0 + box.shape[1]], box)
        a, b = os.path.join(work, f"{i}-as-is.png"), os.path.join(work, f"{i}-pasted.png")
        Image.fromarray(rgb).save(a)
        save(out_g, b)
        plain.append(a)
        pasted.append(b)
    before, after = served_scores(plain, work, "as-is"), served_scores(pasted, work, "pasted")
    with open(os.path.join(ROOT, "models", "chest-xray.json")) as f:
        manifest = json.load(f)
    decision = manifest["decision"]
    threshold = decision["operatingPoints"][decision["defaultOperatingPoint"]]["threshold"]
    print("| split | class | n | mean P as is | mean change with text pasted (median; 5th-95th percentile) | called pneumonia as is / pasted |")
    print("|---|---|---:|---:|---|---|")
    for split in ("external", "test"):
        for cls in CLASSES:
            k = [i for i, r in enumerate(targets) if r["split"] == split and r["class"] == cls and before[i] is not None and after[i] is not None]
            a, b = np.array([before[i] for i in k]), np.array([after[i] for i in k])
            d = b - a
            print(f"| {split} | {cls} | {len(k)} | {a.mean():.3f} | {d.mean():+.4f} ({np.median(d):+.4f}; "
                  f"{np.percentile(d, 5):+.4f} to {np.percentile(d, 95):+.4f}) | {int((a >= threshold).sum())} / {int((b >= threshold).sum())} |")


def gamma_to(g, d):
    """g (0-255) under the gamma that moves its mean grey by d (bisection on log gamma; a gamma
    keeps black and white where they are, so nothing clips)."""
    x = np.clip(g / 255.0, 0, 1)
    target = g.mean() + d
    lo, hi = -3.0, 3.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if 255 * (x ** np.exp(mid)).mean() > target:
            lo = mid
        else:
            hi = mid
    return 255 * x ** np.exp((lo + hi) / 2)


def centre_weight(h, w, sigma_frac=0.3):
    """A smooth Gaussian bump, 1 at the image centre, sigma 0.3 of the side."""
    yy, xx = np.mgrid[0:h, 0:w]
    s = sigma_frac * min(h, w)
    return np.exp(-(((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (2 * s * s)))


def radial_to(g, d):
    """g plus a centre-weighted Gaussian bump whose amplitude moves the mean of the central
    half (the 112 x 112 px box at 224) by d after clipping to 0-255 (bisection on the amplitude)."""
    h, w = g.shape
    wt = centre_weight(h, w)
    box = (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))
    target = g[box].mean() + d
    lo, hi = -255.0, 255.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if np.clip(g + mid * wt, 0, 255)[box].mean() > target:
            hi = mid
        else:
            lo = mid
    return np.clip(g + (lo + hi) / 2 * wt, 0, 255)


def mean_histogram(split="train", cls="normal"):
    """The mean of the 256-bin grey histograms (each normalised to 1) of one split's class."""
    d = os.path.join(DATA, split, cls)
    hist = np.zeros(256)
    files = sorted(os.listdir(d))
    for f in files:
        g = np.clip(np.rint(gray(os.path.join(d, f))), 0, 255).astype(np.int64)
        hist += np.bincount(g.ravel(), minlength=256) / g.size
    return hist / len(files)


def match_histogram(g, reference):
    """Map g's grey levels so that its cumulative histogram follows the reference's (the usual
    monotone CDF-to-CDF mapping; ties keep their order)."""
    q = np.clip(np.rint(g), 0, 255).astype(np.int64)
    own = np.cumsum(np.bincount(q.ravel(), minlength=256)) / q.size
    ref = np.cumsum(reference)
    ref = ref / ref[-1]
    return np.interp(own, ref, np.arange(256))[q]


BRIGHT_BATCH = (195, 232)
SHIFTS = (-24, -12, 12, 24)


def in_bright_batch(path):
    """NORMAL2-IM-0195 to -0232 of external/ normals: one acquisition batch, brighter than the
    other external normals (docs/models/README.md, "Corner text is not a shortcut")."""
    parts = os.path.basename(path).split("-")
    return parts[0] == "NORMAL2" and BRIGHT_BATCH[0] <= int(parts[2]) <= BRIGHT_BATCH[1]


def run_brightness(out):
    """Score external/ and test/ as is and under graded brightness edits through the served
    pipeline: a global gamma moving the mean grey by -24, -12, +12, +24, a centre-weighted
    Gaussian bump moving the central 112 x 112 px mean by the same amounts, and a histogram match
    to train/ normals' mean histogram. Normals get every edit, pneumonias the darkening ones and
    the match. Prints the mean change in P(pneumonia) and the calls at the default threshold per
    group, and how many of the bright batch's false positives each edit turns back to normal."""
    with open(os.path.join(ROOT, "models", "chest-xray.json")) as f:
        decision = json.load(f)["decision"]
    threshold = decision["operatingPoints"][decision["defaultOperatingPoint"]]["threshold"]
    reference = mean_histogram()
    edits = {"as is": lambda g: g, "hist-match": lambda g: match_histogram(g, reference)}
    for d in SHIFTS:
        edits[f"global {d:+d}"] = lambda g, d=d: gamma_to(g, d)
        edits[f"radial {d:+d}"] = lambda g, d=d: radial_to(g, d)
    rows = [{"split": s, "class": c, "path": p} for s in ("external", "test") for c, p in images(s)]
    work = os.path.join(out, "brightness")
    os.makedirs(work, exist_ok=True)
    paths, where = [], []
    for i, r in enumerate(rows):
        with Image.open(r["path"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        g = rgb.astype(np.float32).mean(axis=2)
        r["mean grey"], r["central grey"] = float(g.mean()), float(g[56:168, 56:168].mean())
        for name, fn in edits.items():
            if r["class"] != "normal" and name.endswith(("+12", "+24")):
                continue
            p = os.path.join(work, f"{i}-{name.replace(' ', '')}.png")
            if name == "as is":
                Image.fromarray(rgb).save(p)
            else:
                save(fn(g), p)
            paths.append(p)
            where.append((i, name))
    scores = {}
    for (i, name), s in zip(where, served_scores(paths, work, "brightness")):
        scores.setdefault(name, {})[i] = s
    with open(os.path.join(out, "brightness.json"), "w") as f:
        json.dump({"rows": rows, "scores": {k: {str(i): v for i, v in s.items()} for k, s in scores.items()},
                   "threshold": threshold}, f)
    report_brightness(rows, scores, threshold)


def report_brightness(rows, scores, threshold):
    base = scores["as is"]
    groups = {
        "external/ normal, bright batch": lambda r: r["split"] == "external" and r["class"] == "normal" and in_bright_batch(r["path"]),
        "external/ normal, others": lambda r: r["split"] == "external" and r["class"] == "normal" and not in_bright_batch(r["path"]),
        "external/ normal, all": lambda r: r["split"] == "external" and r["class"] == "normal",
        "test/ normal": lambda r: r["split"] == "test" and r["class"] == "normal",
        "external/ pneumonia": lambda r: r["split"] == "external" and r["class"] != "normal",
        "test/ pneumonia": lambda r: r["split"] == "test" and r["class"] != "normal",
    }
    names = [n for n in scores if n != "as is"]
    print(f"threshold {threshold}; each cell: mean change in P(pneumonia) / called pneumonia (as is -> edited)")
    print("| group | n | grey mean / central | P as is, called | " + " | ".join(names) + " |")
    print("|---|---:|---|---|" + "---|" * len(names))
    for label, sel in groups.items():
        idx = [i for i, r in enumerate(rows) if sel(r)]
        cells = []
        for n in names:
            k = [i for i in idx if i in scores[n] and scores[n][i] is not None and base[i] is not None]
            if not k:
                cells.append("")
                continue
            a = np.array([base[i] for i in k])
            b = np.array([scores[n][i] for i in k])
            dropped = len(idx) - len(k)
            cells.append(f"{(b - a).mean():+.3f} / {int((a >= threshold).sum())}->{int((b >= threshold).sum())}"
                         + (f" ({dropped} refused)" if dropped else ""))
        scored = [i for i in idx if base[i] is not None]
        a = np.array([base[i] for i in scored])
        grey = np.mean([rows[i]["mean grey"] for i in idx])
        central = np.mean([rows[i]["central grey"] for i in idx])
        print(f"| {label} | {len(idx)} | {grey:.0f} / {central:.0f} | {a.mean():.3f}, {int((a >= threshold).sum())} | "
              + " | ".join(cells) + " |")
    batch = [i for i, r in enumerate(rows) if r["split"] == "external" and r["class"] == "normal" and in_bright_batch(r["path"])]
    fp = [i for i in batch if base[i] is not None and base[i] >= threshold]
    print(f"\nbright batch: {len(batch)} images, {len(fp)} false positives as is")
    for n in names:
        flips = [i for i in fp if scores[n].get(i) is not None and scores[n][i] < threshold]
        print(f"- {n}: {len(flips)} of {len(fp)} false positives called normal; P as is -> edited: "
              + ", ".join(f"{base[i]:.2f}->{scores[n][i]:.2f}" for i in fp if scores[n].get(i) is not None))


def gaussian(g, sigma):
    """Separable Gaussian blur of g (radius 3 sigma, mirrored edges)."""
    r = int(np.ceil(3 * sigma))
    x = np.arange(-r, r + 1)
    k = np.exp(-x * x / (2 * sigma * sigma))
    k /= k.sum()
    rows = np.lib.stride_tricks.sliding_window_view(np.pad(g, r, mode="reflect"), len(k), axis=1) @ k
    return np.lib.stride_tricks.sliding_window_view(rows, len(k), axis=0) @ k


def rms(a):
    return float(np.sqrt((a * a).mean()))


def texture(g):
    """Tone and sharpness figures of one image. Histogram shape: mean, SD, skewness, excess
    kurtosis of the grey levels. Fine detail: RMS of g minus its Gaussian blur at sigma 1 px, the
    band an unsharp mask (edge enhancement) boosts; structure: RMS of the band between sigma 1 and
    3 px (rib edges, vessels); edge ratio: fine over structure, above the usual where a film was
    edge-enhanced, whatever its exposure. Local contrast: RMS of g minus its sigma-8 blur, over
    the image SD, so the tone curve's overall gain cancels and what is left is how much of the
    contrast sits in small structures rather than in the broad lung/mediastinum layout."""
    m, s = float(g.mean()), float(g.std())
    z = (g - m) / s
    b1, b3, b8 = gaussian(g, 1), gaussian(g, 3), gaussian(g, 8)
    fine, structure = rms(g - b1), rms(b1 - b3)
    return {"mean": m, "SD": s, "skewness": float((z ** 3).mean()), "kurtosis": float((z ** 4).mean() - 3),
            "fine": fine, "structure": structure, "edge ratio": fine / structure, "local contrast": rms(g - b8) / s}


def texture_group(split, cls, path):
    if cls != "normal":
        return f"{split}/ pneumonia"
    if split == "external":
        return "external/ normal, bright batch" if in_bright_batch(path) else "external/ normal, others"
    return f"{split}/ normal"


TEXTURE_GROUPS = ("train/ normal", "train/ pneumonia", "test/ normal", "test/ pneumonia",
                  "external/ normal, others", "external/ normal, bright batch", "external/ pneumonia")


def run_texture(out):
    """texture() of every train/, test/ and external/ image (texture.json) and, per group, the
    mean and SD of each figure, with the bright batch's distance from train/ normals in their SDs."""
    rows = []
    for split in SPLITS:
        for cls, path in images(split):
            rows.append({"split": split, "class": cls, "path": path, "group": texture_group(split, cls, path),
                         **texture(gray(path))})
    with open(os.path.join(out, "texture.json"), "w") as f:
        json.dump(rows, f)
    names = [k for k in rows[0] if k not in ("split", "class", "path", "group")]
    print("| group | n | " + " | ".join(names) + " |")
    print("|---|---:|" + "---|" * len(names))
    for grp in TEXTURE_GROUPS:
        r = [x for x in rows if x["group"] == grp]
        print(f"| {grp} | {len(r)} | " + " | ".join(f"{np.mean([x[n] for x in r]):.3g} ± {np.std([x[n] for x in r]):.2g}"
                                                    for n in names) + " |")
    ref = [x for x in rows if x["group"] == "train/ normal"]
    batch = [x for x in rows if x["group"] == "external/ normal, bright batch"]
    print("| bright batch - train/ normal, in train/ normal SDs | | " + " | ".join(
        f"{(np.mean([x[n] for x in batch]) - np.mean([x[n] for x in ref])) / np.std([x[n] for x in ref]):+.1f}"
        for n in names) + " |")
    # The batch's histogram shape, as a share of each group and as the grey levels of its
    # group's mean histogram at a few percentiles (where the tone curve moved the levels).
    print("\n| group | skewness < -0.9 | grey at the 5th / 25th / 50th / 75th / 95th percentile of the mean histogram |")
    print("|---|---:|---|")
    for grp in TEXTURE_GROUPS:
        r = [x for x in rows if x["group"] == grp]
        cdf = np.cumsum(mean_histogram_of([x["path"] for x in r]))
        levels = " / ".join(str(int(np.searchsorted(cdf, q))) for q in (0.05, 0.25, 0.5, 0.75, 0.95))
        print(f"| {grp} | {np.mean([x['skewness'] < -0.9 for x in r]):.1%} | {levels} |")


def local_contrast_to(g, target):
    """g with its detail finer than the sigma-8 blur scaled so that texture()'s local contrast
    becomes target (the broad layout, and so the mean grey, stays); clipped to 0-255."""
    b8 = gaussian(g, 8)
    d = g - b8
    k = target * g.std() / max(rms(d), 1e-6)
    return np.clip(b8 + k * d, 0, 255)


def mean_histogram_of(paths):
    hist = np.zeros(256)
    for p in paths:
        q = np.clip(np.rint(gray(p)), 0, 255).astype(np.int64)
        hist += np.bincount(q.ravel(), minlength=256) / q.size
    return hist / len(paths)


def paired_bootstrap(rows, scores, names, threshold, draws, seed):
    """Per edit applied to every image: external/ AUC, specificity and accuracy and test/
    sensitivity and AUC at the threshold, as is and edited, with the 95% interval of the paired
    difference from a bootstrap over patients (images an input check refused in either variant
    left out)."""
    rng = np.random.default_rng(seed)
    figures = [("external", "AUC", lambda s, y: auc(s, y)),
               ("external", "specificity", lambda s, y: point(s, y, threshold)["specificity"]),
               ("external", "accuracy", lambda s, y: point(s, y, threshold)["accuracy"]),
               ("test", "sensitivity", lambda s, y: point(s, y, threshold)["sensitivity"]),
               ("test", "AUC", lambda s, y: auc(s, y))]
    print("\n| edit (every image) | " + " | ".join(f"{sp}/ {fig}: as is -> edited (95% CI of the change)" for sp, fig, _ in figures) + " |")
    print("|---|" + "---|" * len(figures))
    for n in names:
        cells = []
        for split, _, fn in figures:
            idx = [i for i, r in enumerate(rows) if r["split"] == split and scores["as is"][i] is not None
                   and scores[n].get(i) is not None]
            y = np.array([rows[i]["class"] != "normal" for i in idx])
            a = np.array([scores["as is"][i] for i in idx])
            b = np.array([scores[n][i] for i in idx])
            who = patients(split)
            groups = {}
            for k, i in enumerate(idx):
                groups.setdefault(who[os.path.normpath(rows[i]["path"])], []).append(k)
            members = list(groups.values())
            diffs = []
            for _ in range(draws):
                k = np.concatenate([members[j] for j in rng.integers(0, len(members), len(members))])
                diffs.append(fn(b[k], y[k]) - fn(a[k], y[k]))
            lo, hi = np.percentile(diffs, [2.5, 97.5])
            cells.append(f"{fn(a, y):.4f} -> {fn(b, y):.4f} ({lo:+.4f} to {hi:+.4f})")
        print(f"| {n} | " + " | ".join(cells) + " |")


def run_sharpness(out, draws=2000, seed=20261207):
    """Score test/ and external/ as is and under tone and sharpness edits through the served
    pipeline. Towards train/ normals, on every image: a Gaussian blur (sigma 0.5 and 1 px, which
    undoes an unsharp mask), local contrast set to train/ normals' mean, the tone curve matched
    to their mean histogram, and both. Towards the bright batch, on normals only (the converse: if
    the batch's tone or texture is what the model reads, giving it to other normals raises their
    P(pneumonia)): the batch's local contrast, its mean histogram, both. Needs texture.json
    (`texture`). Prints the group table of `brightness`, the batch's false positives each edit
    turns back, and a paired patient bootstrap of external/ AUC, specificity and accuracy and
    test/ sensitivity and AUC for the edits on every image."""
    with open(os.path.join(ROOT, "models", "chest-xray.json")) as f:
        decision = json.load(f)["decision"]
    threshold = decision["operatingPoints"][decision["defaultOperatingPoint"]]["threshold"]
    with open(os.path.join(out, "texture.json")) as f:
        tex = json.load(f)
    lc_normal = np.mean([x["local contrast"] for x in tex if x["group"] == "train/ normal"])
    lc_batch = np.mean([x["local contrast"] for x in tex if x["group"] == "external/ normal, bright batch"])
    tone_normal = mean_histogram()
    tone_batch = mean_histogram_of([x["path"] for x in tex if x["group"] == "external/ normal, bright batch"])
    every = {
        "blur 0.5": lambda g: gaussian(g, 0.5),
        "blur 1.0": lambda g: gaussian(g, 1.0),
        "detail to train/ normals": lambda g: local_contrast_to(g, lc_normal),
        "tone to train/ normals": lambda g: match_histogram(g, tone_normal),
        "tone + detail to train/ normals": lambda g: local_contrast_to(match_histogram(g, tone_normal), lc_normal),
    }
    normals_only = {
        "detail to batch": lambda g: local_contrast_to(g, lc_batch),
        "tone to batch": lambda g: match_histogram(g, tone_batch),
        "tone + detail to batch": lambda g: local_contrast_to(match_histogram(g, tone_batch), lc_batch),
    }
    rows = [{"split": s, "class": c, "path": p} for s in ("external", "test") for c, p in images(s)]
    work = os.path.join(out, "sharpness")
    os.makedirs(work, exist_ok=True)
    paths, where = [], []
    for i, r in enumerate(rows):
        with Image.open(r["path"]) as im:
            rgb = np.asarray(im.convert("RGB"))
        g = rgb.astype(np.float32).mean(axis=2)
        r["mean grey"], r["central grey"] = float(g.mean()), float(g[56:168, 56:168].mean())
        edits = {"as is": None, **every, **(normals_only if r["class"] == "normal" else {})}
        for name, fn in edits.items():
            p = os.path.join(work, f"{i}-{name.replace(' ', '').replace('/', '').replace('+', '-')}.png")
            if fn is None:
                Image.fromarray(rgb).save(p)
            else:
                save(fn(g), p)
            paths.append(p)
            where.append((i, name))
    scores = {}
    for (i, name), s in zip(where, served_scores(paths, work, "sharpness")):
        scores.setdefault(name, {})[i] = s
    with open(os.path.join(out, "sharpness.json"), "w") as f:
        json.dump({"rows": rows, "scores": {k: {str(i): v for i, v in s.items()} for k, s in scores.items()},
                   "threshold": threshold, "local contrast": {"train/ normal": lc_normal, "batch": lc_batch}}, f)
    print(f"local contrast targets: train/ normals {lc_normal:.3f}, bright batch {lc_batch:.3f}")
    report_brightness(rows, scores, threshold)
    paired_bootstrap(rows, scores, list(every), threshold, draws, seed)


PATCH, STRIDE = 32, 16


def occluded(g, y, x, size=PATCH, margin=4, iterations=150):
    """g with a size x size patch at (y, x) filled by diffusion from its border (fill(), on a crop
    around the patch, so a patch costs a few thousand pixels, not the whole image)."""
    y0, x0 = max(0, y - margin), max(0, x - margin)
    y1, x1 = min(g.shape[0], y + size + margin), min(g.shape[1], x + size + margin)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    mask[y - y0:y - y0 + size, x - x0:x - x0 + size] = True
    out = g.copy()
    out[y0:y1, x0:x1] = fill(g[y0:y1, x0:x1], mask, iterations)
    return out


def regions(h=224, w=224, band=24, strip=(88, 136)):
    """Coarse zones of a frontal chest film at 224 px, fixed rather than segmented: the outer band
    (labels, markers, arms, neck, film edge), the central strip below it (spine, mediastinum,
    heart: the bright centre), and the rest (the lung fields, roughly)."""
    outer = np.ones((h, w), dtype=bool)
    outer[band:h - band, band:w - band] = False
    centre = np.zeros((h, w), dtype=bool)
    centre[band:h - band, strip[0]:strip[1]] = True
    return {"outer band": outer, "central strip": centre, "lung fields": ~outer & ~centre}


def colour_over(g, d, colour=(255, 0, 0)):
    """Grey image g (0-255) with map d (0-1) laid over it in colour."""
    a = 0.75 * np.clip(d, 0, 1)[..., None]
    return (g[..., None] * (1 - a) + np.array(colour) * a).astype(np.uint8)


def run_occlusion_map(out, others=3, references=2, seed=20261207):
    """Occlusion maps: for the bright batch's false positives, the `others` most confident other
    external/ false positives, and `references` test/ pneumonias called pneumonia (drawn at
    random), slide a 32 px patch with a 16 px stride, fill it by diffusion, score each variant
    through the served pipeline, and map the drop in P(pneumonia) (each pixel: the mean over the
    patches covering it). Prints where the drop lies by zone (regions()) against the zones' share
    of the image, the largest single-patch drop and whether any one patch turns the call; draws
    image, served heatmap and drop map side by side (occlusion-sheet.png)."""
    with open(os.path.join(ROOT, "models", "chest-xray.json")) as f:
        decision = json.load(f)["decision"]
    threshold = decision["operatingPoints"][decision["defaultOperatingPoint"]]["threshold"]
    work = os.path.join(out, "occlusion-map")
    os.makedirs(work, exist_ok=True)
    candidates = [("external", c, p) for c, p in images("external") if c == "normal"] + \
                 [("test", c, p) for c, p in images("test") if c != "normal"]
    base = served_scores([p for _, _, p in candidates], work, "candidates")
    fp = [(s, k) for k, ((sp, _, _), s) in enumerate(zip(candidates, base)) if sp == "external" and s is not None and s >= threshold]
    batch = [k for s, k in fp if in_bright_batch(candidates[k][2])]
    rest = [k for s, k in sorted(fp, reverse=True) if not in_bright_batch(candidates[k][2])][:others]
    called = [k for k, ((sp, _, _), s) in enumerate(zip(candidates, base)) if sp == "test" and s is not None and s >= threshold]
    refs = random.Random(seed).sample(called, references)
    chosen = [(k, "batch") for k in batch] + [(k, "other external/ FP") for k in rest] + [(k, "test/ pneumonia") for k in refs]
    positions = [(y, x) for y in range(0, 224 - PATCH + 1, STRIDE) for x in range(0, 224 - PATCH + 1, STRIDE)]
    plain, paths, grays = [], [], []
    for n, (k, _) in enumerate(chosen):
        g = gray(candidates[k][2])
        grays.append(g)
        plain.append(os.path.join(work, f"{n}-as-is.png"))
        save(g, plain[-1])
        for j, (y, x) in enumerate(positions):
            paths.append(os.path.join(work, f"{n}-{j}.png"))
            save(occluded(g, y, x), paths[-1])
    heatmaps = os.path.join(work, "heatmaps")
    as_is = served_scores(plain, work, "as-is", heatmaps=heatmaps)
    scores = served_scores(paths, work, "occlusion-map")
    zones = regions()
    per = len(positions)
    print(f"threshold {threshold}; patch {PATCH} px, stride {STRIDE} px, {len(positions)} positions; drop = P as is - P occluded")
    print("| image | group | P as is | share of the drop: outer band / central strip / lung fields | largest patch drop (at y, x) | lowest P with one patch |")
    print("|---|---|---:|---|---|---:|")
    area = {z: m.mean() for z, m in zones.items()}
    tiles = []
    for n, (k, label) in enumerate(chosen):
        p0 = as_is[n]
        ps = np.array([np.nan if s is None else s for s in scores[n * per:(n + 1) * per]])
        drop, cover = np.zeros((224, 224)), np.zeros((224, 224))
        for (y, x), s in zip(positions, ps):
            if not np.isnan(s):
                drop[y:y + PATCH, x:x + PATCH] += p0 - s
                cover[y:y + PATCH, x:x + PATCH] += 1
        drop /= np.maximum(cover, 1)
        pos = np.clip(drop, 0, None)
        share = " / ".join(f"{pos[m].sum() / max(pos.sum(), 1e-9):.2f}" for m in zones.values())
        j = int(np.nanargmax(p0 - ps))
        name = os.path.basename(candidates[k][2]).rsplit(".", 1)[0]
        print(f"| {name} | {label} | {p0:.2f} | {share} | {p0 - ps[j]:.2f} ({positions[j][0]}, {positions[j][1]}) | {np.nanmin(ps):.2f} |")
        heat = os.path.join(heatmaps, f"{n}.png")
        with Image.open(heat) as im:
            served = np.asarray(im.convert("RGB"))
        g = grays[n]
        tiles.append((f"{name} {label} P {p0:.2f}", f"max drop {pos.max():.2f}",
                      [np.repeat(g[..., None], 3, axis=2).astype(np.uint8), served,
                       colour_over(g, pos / max(pos.max(), 1e-9))]))
    print("| (zone's share of the image) | | | " + " / ".join(f"{a:.2f}" for a in area.values()) + " | | |")
    occlusion_sheet(tiles, os.path.join(out, "occlusion-sheet.png"))


def occlusion_sheet(tiles, path, side=128, per_row=2):
    """Rows of [image | served heatmap | occlusion drop map], two images a row, captioned."""
    cell_w, cell_h = 3 * side + 2 * 2 + 12, side + 26
    rows_n = (len(tiles) + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * cell_w, rows_n * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (caption, note, panels) in enumerate(tiles):
        ox, oy = (i % per_row) * cell_w, (i // per_row) * cell_h
        for j, a in enumerate(panels):
            sheet.paste(Image.fromarray(a).resize((side, side), Image.BILINEAR), (ox + j * (side + 2), oy))
        draw.text((ox, oy + side + 1), caption, fill=(0, 0, 0))
        draw.text((ox, oy + side + 13), f"image | served heatmap | occlusion drop ({note})", fill=(80, 80, 80))
    sheet.quantize(colors=128).save(path, optimize=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("detect", "sheet", "occlude", "paste", "brightness", "texture", "sharpness",
                                        "occlusion-map"))
    ap.add_argument("--out", required=True, help="scratch folder for detections, sheets, masked images")
    ap.add_argument("--min-tophat", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=20261207)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.command == "detect":
        run_detect(args.out, args.min_tophat)
    elif args.command == "sheet":
        run_sheet(args.out, args.seed)
    elif args.command == "occlude":
        run_occlude(args.out)
    elif args.command == "paste":
        run_paste(args.out)
    elif args.command == "brightness":
        run_brightness(args.out)
    elif args.command == "texture":
        run_texture(args.out)
    elif args.command == "sharpness":
        run_sharpness(args.out)
    else:
        run_occlusion_map(args.out)


if __name__ == "__main__":
    main()
