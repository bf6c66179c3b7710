"""Parameters and multiply-accumulates of an ONNX graph, read from the file
itself (so the benchmark measures what ships, not the torch model).

Written by hand because no maintained library counts ONNX MACs for the ops
we use; only Conv and Gemm/MatMul contribute (the rest is O(pixels), not
O(pixels x channels x kernel))."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference


def onnx_cost(path: str | Path) -> dict:
    model = shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    # Parameters are the float weights; int64 shape constants etc. are not.
    params = sum(int(np.prod(t.dims)) for t in graph.initializer
                 if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16))
    shapes = {}
    for value in list(graph.value_info) + list(graph.output) + list(graph.input):
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            shapes[value.name] = dims
    macs = 0
    for node in graph.node:
        if node.op_type == "Conv":
            w = initializers.get(node.input[1])
            out = shapes.get(node.output[0])
            if w is None or out is None:
                raise ValueError(f"cannot size Conv {node.name} in {path}: missing weight or output shape")
            kernel = int(np.prod(w.dims[1:]))  # (C_in/groups) * kh * kw
            macs += int(np.prod(out)) * kernel
        elif node.op_type in ("Gemm", "MatMul"):
            a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
            if a is not None and out is not None:
                macs += int(np.prod(out)) * a[-1]
    return {"params": params, "macs": macs}
