"""ONNX Runtime runner: CUDA execution provider when available, else CPU."""

from __future__ import annotations

import numpy as np

from csk_ros.backends.engine_check import onnxruntime_io_problems
from csk_ros.bundle import Bundle, BundleError


class OnnxRuntimeRunner:
    """One InferenceSession per graph, all created at load so a mode switch costs nothing."""

    name = "onnxruntime"

    def __init__(self, bundle: Bundle, graphs: tuple[str, ...], intra_op_threads: int = 0,
                 inter_op_threads: int = 0, providers: list[str] | None = None, allow_spinning: bool = False,
                 precision: str = "fp32"):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        missing = [p for p in providers if p not in available]
        if missing:
            raise BundleError(f"ONNX Runtime providers {missing} are not available here (available: {available})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads  # 0 = ORT default (one per physical core)
        options.inter_op_num_threads = inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's pool threads busy-wait after each run by default: in a node that shares the CPU with its own
        # decoding and with the camera drivers, that burns a core between frames for a few microseconds' gain.
        spin = "1" if allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        self.sessions = {}
        for graph in graphs:
            if precision == "int8" and graph not in bundle.quantized:
                raise BundleError(f"{bundle.root}: no INT8 graph for '{graph}'; create it with "
                                  f"`python -m engines.quantize --bundle {bundle.root}`")
            record = bundle.source_graph(graph, precision)  # the QDQ graph for int8
            try:
                session = ort.InferenceSession(str(record.path), sess_options=options, providers=providers)
            except Exception as exc:  # ORT raises its own exception types for corrupt models
                raise BundleError(f"ONNX Runtime cannot load {record.path}: {exc}") from exc
            problems = onnxruntime_io_problems(session, record, bundle)
            if problems:
                raise BundleError(problems[0])
            self.sessions[graph] = session
        self.providers = self.sessions[graphs[0]].get_providers()
        self.info = {"backend": "onnxruntime", "providers": self.providers,
                     "intra_op_threads": intra_op_threads, "inter_op_threads": inter_op_threads,
                     "allow_spinning": allow_spinning, "precision": precision,
                     "graph_files": {g: bundle.source_graph(g, precision).path.name for g in self.sessions}}

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mask, confidence = self.sessions[graph].run(None, feeds)
        return mask, confidence

    def close(self) -> None:
        self.sessions.clear()
