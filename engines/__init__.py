"""Offline tools: checkpoint -> ONNX model bundle (export.py) and
ONNX -> TensorRT engines (build.py). Bundles are written under engines/<name>/."""
