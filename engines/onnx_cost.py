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


WEIGHT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8, onnx.TensorProto.UINT8,
                onnx.TensorProto.INT32)


def onnx_cost(path: str | Path) -> dict:
    """{"params", "macs"}. QDQ (INT8) graphs count the same way: a weight that
    reaches its Conv through DequantizeLinear is sized from its int8
    initializer, and quantisation scales / zero points are not parameters."""
    model = shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    qparams = {name for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for name in n.input[1:]}
    dequantized = {n.output[0]: initializers[n.input[0]] for n in graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in initializers}
    initializers.update(dequantized)  # Conv weight = DQ(int8 initializer): same dims
    # Parameters are the weights (float, or int8/int32 in a QDQ graph); int64 shape constants and the
    # quantisation scales / zero points are not.
    params = sum(int(np.prod(t.dims)) for t in graph.initializer
                 if t.data_type in WEIGHT_TYPES and t.name not in qparams)
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
