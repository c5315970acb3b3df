#!/usr/bin/env python3
"""PyTorch side of the Node/PyTorch parity check (src/ml/parity.test.ts).

    /usr/bin/python3 ml/parity.py --model models/brain-mri.onnx --image test/fixtures/ml/brain-glioma.png

For each image: the training preprocessing (ml/common.py load_pixels + preprocess_batch), then
a PyTorch forward pass of ml/common.py's ImagemedixNet + ExportWrapper carrying the weights
of the exported ONNX file. No .pt checkpoint ships, so the weights are read back from the
ONNX initializers: the exporter folded each BatchNorm into the convolution before it, so each
BatchNorm here is set to the identity plus the folded bias. An int8 graph (ml/quantize.py) has
its weights dequantised and its uint8 activations simulated (quantise, dequantise) after the same
convolutions and residual sums. Prints one JSON object: per image
the preprocessed tensor (base64 float32, little-endian), logits, features, cam and the
out-of-distribution distance.

--dump-sums FILE writes the decoded R+G+B sums (int16, one 224x224 block per image, in
argument order) so the Node decoder can be compared with Pillow on many JPEGs.
"""
import argparse
import base64
import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ExportWrapper, ImagemedixNet, load_pixels, preprocess_batch  # noqa: E402


def b64(t):
    return base64.b64encode(t.detach().contiguous().numpy().astype("<f4").tobytes()).decode("ascii")


def fake_quant_hook(scale, zero):
    def hook(_module, _inputs, out):
        return (torch.clamp(torch.round(out / scale) + zero, 0, 255) - zero) * scale
    return hook


def rebuild(onnx_path):
    """ImagemedixNet + ExportWrapper holding the ONNX file's weights (and the test-time
    augmentation its manifest records); for an ensemble graph (ml/ensemble.py, manifest
    `ensemble`) an EnsembleWrapper of one such rebuild per member."""
    manifest_path = os.path.splitext(onnx_path)[0] + ".json"
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    flip_tta = bool(manifest.get("testTimeAugmentation", {}).get("horizontalFlip", False))
    input_norm = manifest.get("training", {}).get("recipe", {}).get("inputNorm") == "per-image"
    graph = onnx.load(onnx_path).graph
    init = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    members = manifest.get("ensemble", {}).get("members")
    if not members:
        model, head, means = rebuild_member(graph, init, "", input_norm, onnx_path)
        if head is None or means is None or "precision" not in init:
            raise SystemExit(f"{onnx_path}: unexpected graph (no head, class means or precision)")
        return ExportWrapper(model, means.reshape(head[0].shape[0], -1), init["precision"], flip_tta=flip_tta).eval()
    # ml/ensemble.py prefixed each member's nodes m0_, m1_, ...; the distance nodes left are
    # member 0's, reading the concatenated features with the ensemble's refitted statistics.
    wrappers, means = [], None
    for k, member in enumerate(members):
        member_flip = bool(member.get("horizontalFlip", flip_tta))
        member_norm = member.get("inputNorm", "per-image" if input_norm else "none") == "per-image"
        model, head, member_means = rebuild_member(graph, init, f"m{k}_", member_norm, onnx_path)
        if head is None:
            raise SystemExit(f"{onnx_path}: member {k} has no head")
        means = means if member_means is None else member_means
        d = model.head.weight.shape[1]
        # Its own distance is dropped in the graph: identity statistics, output unused.
        wrappers.append(ExportWrapper(model, torch.zeros(head[0].shape[0], d), torch.eye(d), flip_tta=member_flip).eval())
    if means is None or "precision" not in init:
        raise SystemExit(f"{onnx_path}: unexpected ensemble graph (no class means or precision)")
    n_classes = wrappers[0].model.head.weight.shape[0]
    return EnsembleWrapper(wrappers, means.reshape(n_classes, -1), init["precision"]).eval()


class EnsembleWrapper(torch.nn.Module):
    """What ml/ensemble.py's graph computes: the members' logits and maps averaged, features
    concatenated, and the Mahalanobis distance of the concatenation (as ExportWrapper)."""

    def __init__(self, members, means, precision):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.register_buffer("means", means.float())
        self.register_buffer("precision", precision.float())

    def forward(self, x):
        outs = [m(x) for m in self.members]
        scale = torch.tensor(1.0 / len(outs), dtype=torch.float32)
        logits, cam = self.mean([o[0] for o in outs], scale), self.mean([o[2] for o in outs], scale)
        feats = torch.cat([o[1] for o in outs], dim=1)
        diff = feats.unsqueeze(1) - self.means.unsqueeze(0)
        d2 = torch.einsum("nkd,de,nke->nk", diff, self.precision, diff)
        return logits, feats, cam, d2.min(dim=1).values.clamp(min=0).sqrt()

    @staticmethod
    def mean(terms, scale):
        # The graph's order: a chain of Adds, then one Mul by 1/n.
        acc = terms[0]
        for t in terms[1:]:
            acc = acc + t
        return acc * scale


def rebuild_member(graph, init, prefix, input_norm, onnx_path):
    """The ImagemedixNet of the nodes whose outputs start with `prefix` (every node of a single
    model), its (head weight, bias) and the class means its distance node reads (None if none)."""
    nodes = [n for n in graph.node if n.output[0].startswith(prefix)]
    produced = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def weight(name):
        """An initializer, or an int8/int32 one behind a DequantizeLinear (ml/quantize.py)."""
        if name in init:
            return init[name]
        dq = produced[name]
        q, scale = init[dq.input[0]].double(), init[dq.input[1]].double()
        return (q * scale.reshape(-1, *([1] * (q.dim() - 1)))).float()

    def quantised_as(name):
        """(scale, zero point) of the QuantizeLinear reading `name` or the ReLU after it, else None."""
        for n in consumers.get(name, []):
            if n.op_type == "Relu":
                return quantised_as(n.output[0])
            if n.op_type == "QuantizeLinear":
                return float(init[n.input[1]]), int(init[n.input[2]])
        return None

    convs, head, means, conv_q, sum_q = [], None, None, [], []
    for node in nodes:
        if node.op_type == "Conv":
            convs.append((weight(node.input[1]), weight(node.input[2]) if len(node.input) > 2 else None))
            conv_q.append(quantised_as(node.output[0]))
        elif node.op_type == "Add" and all(i in produced and produced[i].op_type == "DequantizeLinear" for i in node.input):
            sum_q.append(quantised_as(node.output[0]))
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            w = init[node.input[1]]
            head = (w if trans_b else w.T, init[node.input[2]])
        elif node.op_type == "Sub" and any(i in init for i in node.input):
            means = next(init[i] for i in node.input if i in init)
    if head is None or len(convs) < 2:
        return None, None, means

    n_classes = head[0].shape[0]
    width = convs[1][0].shape[0]
    model = ImagemedixNet(n_classes, width=width, input_norm=input_norm)
    modules = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if len(modules) != len(convs):
        raise SystemExit(f"{onnx_path}: {len(convs)} convolutions in the graph{' member ' + prefix if prefix else ''}, {len(modules)} in ImagemedixNet")
    with torch.no_grad():
        for conv, bn, (w, b) in zip(modules, norms, convs):
            if tuple(conv.weight.shape) != tuple(w.shape):
                raise SystemExit(f"{onnx_path}: conv shape {tuple(w.shape)} where ImagemedixNet has {tuple(conv.weight.shape)}")
            conv.weight.copy_(w)
            bn.weight.fill_(1.0)
            bn.bias.copy_(b if b is not None else torch.zeros_like(bn.bias))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x
        model.head.weight.copy_(head[0])
        model.head.bias.copy_(head[1].reshape(-1))
    # An int8 graph: its uint8 activations simulated (quantise, dequantise) after each quantised
    # convolution (a zero point of 0 is the ReLU) and after the residual sums that have them.
    for bn, qp in zip(norms, conv_q):
        if qp:
            bn.register_forward_hook(fake_quant_hook(*qp))
    for stage, qp in zip([model.stage1, model.stage2, model.stage3], sum_q):
        if qp:
            stage.register_forward_hook(fake_quant_hook(*qp))
    return model, head, means


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--image", action="append", default=[])
    p.add_argument("--images-from", help="file with one image path per line")
    p.add_argument("--dump-sums", help="write int16 R+G+B sums of every image here and skip the model")
    args = p.parse_args()
    torch.set_num_threads(1)
    images = list(args.image)
    if args.images_from:
        with open(args.images_from) as f:
            images += [line.strip() for line in f if line.strip()]
    if not images:
        raise SystemExit("no images")

    if args.dump_sums:
        with open(args.dump_sums, "wb") as f:
            for path in images:
                f.write(load_pixels(path).numpy().astype("<i2").tobytes())
        print(json.dumps({"images": len(images), "file": args.dump_sums}))
        return

    wrapper = rebuild(args.model)
    out = []
    with torch.no_grad():
        for path in images:
            x = preprocess_batch(load_pixels(path).unsqueeze(0))
            logits, feats, cam, ood = wrapper(x)
            out.append({"image": path, "tensorShape": list(x.shape), "tensor": b64(x),
                        "logits": logits[0].tolist(), "features": feats[0].tolist(),
                        "camShape": list(cam.shape[1:]), "cam": b64(cam[0]), "oodDistance": float(ood[0])})
    print(json.dumps({"torch": torch.__version__, "model": args.model, "images": out}))


if __name__ == "__main__":
    main()
