#!/usr/bin/env python3
"""Two or more exported ImagemedixNet graphs (float or int8, ml/quantize.py) as one ensemble graph
with the served outputs, for scripts/ensemble-model.ts:

    /usr/bin/python3 ml/ensemble.py --member a.onnx --member b.onnx --out ensemble.onnx

One input feeds every member (names prefixed m0_, m1_, ...). The outputs keep the serving
contract (src/ml/inference.ts):
  logits        the mean of the members' logits (each already mirror-averaged if its graph was
                exported with it), so the manifest's temperature applies to the mean;
  cam           the mean of the members' class activation maps: for a GAP + linear head the
                spatial mean of each member's map is its logits, so the mean map stays the exact
                class activation map of the mean logits;
  features      the members' penultimate features concatenated (their spaces are unrelated, so they
                are not averaged);
  ood_distance  the Mahalanobis distance of those features to the nearest class mean, by the first
                member's distance nodes rewired to the concatenation. The class means and the
                precision written here are placeholders (zeros, identity): `ml/quantize.py
                refit-ood` fits them on the ensemble's own train/ features.
The members' own distance nodes and statistics are dropped.
"""
import argparse
import json

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

OUTPUTS = ("logits", "features", "cam", "ood_distance")


def distance_nodes(graph, prefix):
    """The nodes that compute ood_distance from features (Unsqueeze, Sub, Einsum, ReduceMin,
    Clip, Sqrt and their Constants), found by walking back from ood_distance to features."""
    produced = {o: n for n in graph.node for o in n.output}
    seen, stack = [], [f"{prefix}ood_distance"]
    while stack:
        name = stack.pop()
        node = produced.get(name)
        if node is None or name == f"{prefix}features" or node.output[0] in {s.output[0] for s in seen}:
            continue
        seen.append(node)
        stack.extend(i for i in node.input if i)
    return seen


def build(members, out):
    models = []
    for k, path in enumerate(members):
        m = onnx.load(path)
        if [o.name for o in m.graph.output] != list(OUTPUTS):
            raise SystemExit(f"{path}: outputs {[o.name for o in m.graph.output]}, expected {list(OUTPUTS)}")
        models.append(compose.add_prefix(m, f"m{k}_"))
    first = onnx.load(members[0])
    opset = max(m.opset_import[0].version for m in models)
    inp = first.graph.input[0]
    p = [f"m{k}_" for k in range(len(models))]

    nodes, inits = [], []
    for k, m in enumerate(models):
        g = m.graph
        drop = {n.output[0] for n in distance_nodes(g, p[k])} if k > 0 else set()
        for n in g.node:
            if n.output[0] in drop:
                continue
            for i, name in enumerate(n.input):
                if name == f"{p[k]}{inp.name}":
                    n.input[i] = inp.name
            nodes.append(n)
        inits.extend(g.initializer)

    # Member 0's distance nodes read the concatenated features and write ood_distance.
    g0 = models[0].graph
    dist0 = distance_nodes(g0, p[0])
    init0 = {i.name: i for i in g0.initializer}
    sub = next(n for n in dist0 if n.op_type == "Sub")
    means_name = next(i for i in sub.input if i in init0)
    einsum = next(n for n in dist0 if n.op_type == "Einsum")
    precision_name = next(i for i in einsum.input if i in init0)
    n_classes = numpy_helper.to_array(init0[means_name]).shape[1]
    width = sum(numpy_helper.to_array({i.name: i for i in m.graph.initializer}[f"m{k}_precision"]).shape[0]
                for k, m in enumerate(models))
    for n in dist0:
        for i, name in enumerate(n.input):
            if name == f"{p[0]}features":
                n.input[i] = "features"
        for i, name in enumerate(n.input):
            if name == precision_name:
                n.input[i] = "precision"
        for i, name in enumerate(n.output):
            if name == f"{p[0]}ood_distance":
                n.output[i] = "ood_distance"
    replaced = {means_name, precision_name}
    inits = [i for i in inits if i.name not in replaced]
    inits.append(numpy_helper.from_array(np.zeros((1, n_classes, width), np.float32), means_name))
    inits.append(numpy_helper.from_array(np.eye(width, dtype=np.float32), "precision"))

    scale = numpy_helper.from_array(np.array(1.0 / len(models), np.float32), "ensemble_scale")
    inits.append(scale)

    def mean_of(name):
        terms = [f"{q}{name}" for q in p]
        acc = terms[0]
        for j, t in enumerate(terms[1:]):
            nodes.append(helper.make_node("Add", [acc, t], [f"ensemble_{name}_sum{j}"], name=f"ensemble_{name}_Add{j}"))
            acc = f"ensemble_{name}_sum{j}"
        nodes.append(helper.make_node("Mul", [acc, "ensemble_scale"], [name], name=f"ensemble_{name}_Mean"))

    mean_of("logits")
    mean_of("cam")
    nodes.append(helper.make_node("Concat", [f"{q}features" for q in p], ["features"], name="ensemble_features_Concat", axis=1))

    # Topological order: the distance nodes after the Concat.
    dist_outputs = {n.output[0] for n in dist0}
    ordered = [n for n in nodes if n.output[0] not in dist_outputs] + [n for n in nodes if n.output[0] in dist_outputs]
    used = {i for n in ordered for i in n.input}
    inits = [i for i in inits if i.name in used]

    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_classes]),
        helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width]),
        helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["batch", n_classes, "cam_height", "cam_width"]),
        helper.make_tensor_value_info("ood_distance", TensorProto.FLOAT, ["batch"]),
    ]
    graph = helper.make_graph(ordered, "imagemedix_ensemble", [inp], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="imagemedix ml/ensemble.py")
    model.ir_version = first.ir_version
    onnx.checker.check_model(model)
    onnx.save(model, out)
    print(json.dumps({"out": out, "members": members, "features": width, "classes": n_classes, "nodes": len(ordered)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--member", action="append", required=True, help="an exported graph (at least two)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if len(args.member) < 2:
        raise SystemExit("an ensemble needs at least two --member graphs")
    build(args.member, args.out)


if __name__ == "__main__":
    main()
