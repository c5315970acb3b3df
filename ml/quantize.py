#!/usr/bin/env python3
"""Static int8 quantisation of an exported ImagemedixNet graph, in QDQ form (QuantizeLinear /
DequantizeLinear pairs that onnxruntime fuses into QLinearConv / QLinearAdd on CPU).

Two steps, with the activation ranges collected in Node between them (there is no onnxruntime
for Python here; scripts/quantize-model.ts runs all three):

    /usr/bin/python3 ml/quantize.py probe --model models/brain-mri.onnx --out /tmp/probe.onnx
        the float graph with every Conv and Relu output also exposed as a graph output
    (node) run the probe over train/ images (never test/ or external/), write the ranges JSON
    /usr/bin/python3 ml/quantize.py quantize --model models/brain-mri.onnx --ranges ranges.json --out <dir>/brain-mri.onnx
    (node) run the quantised graph over train/ minus validation and over validation, write features
    /usr/bin/python3 ml/quantize.py refit-ood --model <dir>/brain-mri.onnx --features features.json --rule max-times:1.2
        class means and tied covariance refitted on the quantised graph's train/ features (as
        ml/train.py gaussian_stats), written into the graph; prints the validation distances and
        the refusal threshold by the manifest's rule

Scheme: weights int8 (--weight-bits 7: -63..63, for x86 CPUs without VNNI, which multiply-add
u8 x s8 pairs into saturating 16-bit sums), symmetric, per output channel; biases int32 at scale x_scale * w_scale;
activations uint8 with the range observed on the calibration images (a ReLU output gets zero
point 0, so the QuantizeLinear clamps at 0 and the ReLU is dropped). The first convolution (one
input channel, under 1% of the arithmetic) stays float, so the input keeps all 766 grey levels;
the last stage's residual sum, ReLU, pooling, head, activation maps and Mahalanobis distance
stay float, so `features`, `cam` and `ood_distance` are computed as before from int8
convolution outputs.
"""
import argparse
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def consumers_of(graph):
    out = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def producer_of(graph):
    return {o: node for node in graph.node for o in node.output}


def probe(args):
    model = onnx.load(args.model)
    g = model.graph
    existing = {o.name for o in g.output}
    names = [n.output[0] for n in g.node if n.op_type in ("Conv", "Relu", "Concat")]
    for name in names:
        if name not in existing:
            g.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    onnx.save(model, args.out)
    print(json.dumps({"probe": args.out, "tensors": names}))


def uint8_params(lo, hi):
    """Scale and zero point of an asymmetric uint8 range that holds 0 exactly."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = int(round(-lo / scale))
    return np.float32(scale), np.uint8(min(max(zero, 0), 255))


def quantize(args):
    with open(args.ranges) as f:
        ranges = json.load(f)["ranges"]
    model = onnx.load(args.model)
    g = model.graph
    init = {i.name: i for i in g.initializer}
    prod = producer_of(g)
    cons = consumers_of(g)
    convs = [n for n in g.node if n.op_type == "Conv"]
    float_convs = {convs[i].name or convs[i].output[0] for i in args.float_conv}

    new_inits, removed = [], set()
    qparams = {}  # float tensor name -> (scale, zero point) it is quantised with

    def rng(name):
        r = ranges[name]
        if args.method == "minmax":
            return min(r["min"]), max(r["max"])
        q = args.method_percentile
        return float(np.percentile(r["min"], 100 - q)), float(np.percentile(r["max"], q))

    def add_qdq(tensor, scale, zero, source=None):
        """Q -> DQ on `tensor` (computed as `source`, default itself); every consumer of
        `tensor` reads the dequantised copy."""
        src = source or tensor
        s_name, z_name = f"{tensor}_scale", f"{tensor}_zero"
        new_inits.append(numpy_helper.from_array(np.array(scale, dtype=np.float32), s_name))
        new_inits.append(numpy_helper.from_array(np.array(zero, dtype=np.uint8), z_name))
        q_out, dq_out = f"{tensor}_q", f"{tensor}_dq"
        qn = helper.make_node("QuantizeLinear", [src, s_name, z_name], [q_out], name=f"{tensor}_Q")
        dqn = helper.make_node("DequantizeLinear", [q_out, s_name, z_name], [dq_out], name=f"{tensor}_DQ")
        for node in cons.get(tensor, []):
            for i, name in enumerate(node.input):
                if name == tensor:
                    node.input[i] = dq_out
        qparams[tensor] = (scale, zero)
        return [qn, dqn]

    inserts = {}  # node output after which to insert the new nodes -> list of nodes

    # Activations: the output of each quantised conv, or of the ReLU after it (then zero point 0
    # and the ReLU dropped), and the ReLU after a residual sum in stages 1-2 (before MaxPool).
    relu_of = {}
    for node in g.node:
        if node.op_type == "Relu":
            relu_of[node.input[0]] = node
    stage_sums = [n for n in g.node if n.op_type == "Add" and prod.get(n.input[0]) is not None
                  and prod[n.input[0]].op_type == "Conv" and prod.get(n.input[1]) is not None
                  and prod[n.input[1]].op_type == "Conv"]
    last_sum = stage_sums[-1] if stage_sums else None

    for conv in convs:
        key = conv.name or conv.output[0]
        out = conv.output[0]
        relu = relu_of.get(out)
        if key in float_convs:
            # A float conv whose ReLU output feeds quantised convs: quantise after the ReLU.
            if relu is not None:
                hi = rng(relu.output[0])[1]
                inserts[relu.output[0]] = add_qdq(relu.output[0], *uint8_params(0.0, hi))
            continue
        if relu is not None and len(cons.get(out, [])) == 1:
            hi = rng(relu.output[0])[1]
            scale, zero = uint8_params(0.0, hi)
            removed.add(id(relu))
            inserts[out] = add_qdq(relu.output[0], scale, zero, source=out)
        else:
            lo, hi = rng(out)
            inserts[out] = add_qdq(out, *uint8_params(lo, hi))

    for add in stage_sums:
        if add is last_sum and not args.quantize_last_sum:
            continue
        relu = relu_of.get(add.output[0])
        if relu is None:
            continue
        hi = rng(relu.output[0])[1]
        scale, zero = uint8_params(0.0, hi)
        removed.add(id(relu))
        pools = [n for n in cons.get(relu.output[0], []) if n.op_type == "MaxPool"]
        inserts[add.output[0]] = add_qdq(relu.output[0], scale, zero, source=add.output[0])
        # MaxPool on the uint8 tensor: the same scale before and after, so onnxruntime drops the pair.
        for mp in pools:
            inserts[mp.output[0]] = add_qdq(mp.output[0], scale, zero)

    # Weights and biases of the quantised convs.
    for conv in convs:
        key = conv.name or conv.output[0]
        if key in float_convs:
            continue
        x_name = conv.input[0]
        if not x_name.endswith("_dq"):
            raise SystemExit(f"{key}: input {x_name} is not quantised")
        x_scale = qparams[x_name[: -len("_dq")]][0]
        w = numpy_helper.to_array(init[conv.input[1]]).astype(np.float32)
        top = 2 ** (args.weight_bits - 1) - 1
        w_scale = np.maximum(np.abs(w).reshape(w.shape[0], -1).max(1), 1e-12) / top
        wq = np.clip(np.round(w / w_scale.reshape(-1, 1, 1, 1)), -top, top).astype(np.int8)
        base = conv.input[1]
        new_inits += [numpy_helper.from_array(wq, f"{base}_int8"),
                      numpy_helper.from_array(w_scale.astype(np.float32), f"{base}_wscale"),
                      numpy_helper.from_array(np.zeros(w.shape[0], np.int8), f"{base}_wzero")]
        w_dq = helper.make_node("DequantizeLinear", [f"{base}_int8", f"{base}_wscale", f"{base}_wzero"],
                                [f"{base}_wdq"], name=f"{base}_wDQ", axis=0)
        nodes = [w_dq]
        conv.input[1] = f"{base}_wdq"
        if len(conv.input) > 2 and conv.input[2]:
            b = numpy_helper.to_array(init[conv.input[2]]).astype(np.float64)
            b_scale = (np.float64(x_scale) * w_scale.astype(np.float64)).astype(np.float32)
            bq = np.round(b / b_scale).astype(np.int32)
            bb = conv.input[2]
            new_inits += [numpy_helper.from_array(bq, f"{bb}_int32"),
                          numpy_helper.from_array(b_scale, f"{bb}_bscale"),
                          numpy_helper.from_array(np.zeros(w.shape[0], np.int32), f"{bb}_bzero")]
            nodes.append(helper.make_node("DequantizeLinear", [f"{bb}_int32", f"{bb}_bscale", f"{bb}_bzero"],
                                          [f"{bb}_bdq"], name=f"{bb}_bDQ", axis=0))
            conv.input[2] = f"{bb}_bdq"
        inserts.setdefault(("before", id(conv)), []).extend(nodes)

    # Rebuild the node list in order.
    old = list(g.node)
    out_nodes = []
    for node in old:
        out_nodes += inserts.get(("before", id(node)), [])
        if id(node) in removed:
            continue
        out_nodes.append(node)
        for o in node.output:
            out_nodes += inserts.get(o, [])
    # A removed ReLU's output is now the DequantizeLinear's: nothing else reads the old name.
    del g.node[:]
    g.node.extend(out_nodes)
    replaced = {n.input[1][: -len("_wdq")] for n in out_nodes if n.op_type == "Conv" and n.input[1].endswith("_wdq")}
    replaced |= {n.input[2][: -len("_bdq")] for n in out_nodes if n.op_type == "Conv" and len(n.input) > 2 and n.input[2].endswith("_bdq")}
    keep = [i for i in g.initializer if i.name not in replaced]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    if model.opset_import[0].version < 13:
        raise SystemExit("per-channel DequantizeLinear needs opset >= 13")
    onnx.checker.check_model(model)
    onnx.save(model, args.out)
    print(json.dumps({"out": args.out, "quantisedConvs": len(convs) - len(float_convs),
                      "floatConvs": sorted(float_convs), "method": args.method}))


def refit_ood(args):
    """ml/train.py's gaussian_stats on the quantised graph's own features, and the threshold by
    the manifest's rule on its validation distances."""
    with open(args.features) as f:
        data = json.load(f)
    n_classes = len(data["labels"])
    feats = np.asarray(data["train"]["features"], dtype=np.float64)
    labels = np.asarray(data["train"]["labels"])
    means = np.stack([feats[labels == c].mean(0) for c in range(n_classes)])
    centred = feats - means[labels]
    cov = centred.T @ centred / len(feats)
    cov += np.eye(cov.shape[0]) * 1e-3 * cov.diagonal().mean()
    precision = np.linalg.inv(cov)

    model = onnx.load(args.model)
    g = model.graph
    init = {i.name: i for i in g.initializer}
    means_name = next(i for n in g.node if n.op_type == "Sub" for i in n.input if i in init)
    shape = numpy_helper.to_array(init[means_name]).shape
    for name, value in ((means_name, means.reshape(shape)), ("precision", precision)):
        init[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    onnx.save(model, args.model)

    val = np.asarray(data["validation"]["features"], dtype=np.float32)
    d = val[:, None, :] - means.astype(np.float32)[None]
    dist = np.sqrt(np.clip(np.einsum("nkd,de,nke->nk", d, precision.astype(np.float32), d).min(1), 0, None))
    kind, value = args.rule.split(":")
    threshold = float(np.quantile(dist, float(value))) if kind == "quantile" else float(value) * float(dist.max())
    print(json.dumps({"oodThreshold": round(threshold, 4), "rule": args.rule, "train": len(feats), "validation": len(val),
                      "validationDistances": {f"q{int(q * 1000)}": round(float(np.quantile(dist, q)), 3)
                                              for q in (0.5, 0.9, 0.99, 0.995, 0.999, 1.0)}}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("probe")
    a.add_argument("--model", required=True)
    a.add_argument("--out", required=True)
    b = sub.add_parser("quantize")
    b.add_argument("--model", required=True)
    b.add_argument("--ranges", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--method", choices=["minmax", "percentile"], default="minmax")
    b.add_argument("--method-percentile", type=float, default=99.9,
                   help="with --method percentile: this percentile of the per-image maxima")
    b.add_argument("--float-conv", type=int, action="append", default=None,
                   help="index of a convolution to keep float (default: 0, the one-channel stem)")
    b.add_argument("--weight-bits", type=int, choices=[7, 8], default=8,
                   help="7: weights in -63..63, so x86 CPUs without VNNI (AVX2, whose u8 x s8 multiply-add "
                        "saturates at 16 bits) cannot overflow (measured for 2.1.0, not shipped: see docs/models/README.md)")
    b.add_argument("--quantize-last-sum", action="store_true",
                   help="also quantise the last stage's residual sum (features and maps from uint8)")
    c = sub.add_parser("refit-ood")
    c.add_argument("--model", required=True, help="rewritten in place")
    c.add_argument("--features", required=True)
    c.add_argument("--rule", required=True, help="quantile:0.995 or max-times:1.2")
    args = p.parse_args()
    if args.cmd == "probe":
        probe(args)
    elif args.cmd == "refit-ood":
        refit_ood(args)
    else:
        if args.float_conv is None:
            args.float_conv = [0]
        quantize(args)


if __name__ == "__main__":
    main()
