"""Inference backends behind one interface: `load_bundle(path, backend=...)`.

The returned `Segmenter` takes camera-size-matched uint8 images (EO HxWx3
RGB, IR HxW) at the bundle's input size and returns (mask, confidence) uint8
HxW. Backends: TensorRT (engines in the bundle) and ONNX Runtime (the ONNX
graphs). With backend="auto", TensorRT is used when it is installed and the
bundle carries valid engines for this GPU; otherwise ONNX Runtime, and the
reason is kept in `Segmenter.fallback_reason` for logs and diagnostics.

precision="int8" runs the bundle's INT8 QDQ graphs (`python -m
engines.quantize`) under ONNX Runtime, and asks TensorRT for int8 engines;
"fp32" runs the float graphs under ONNX Runtime and lets TensorRT pick the
bundle's engine as before.
"""

from __future__ import annotations

import numpy as np

from csk_ros.backends.engine_check import int8_graph_problem
from csk_ros.backends.onnxruntime_backend import OnnxRuntimeRunner
from csk_ros.bundle import Bundle, BundleError, load_manifest

BACKENDS = ("auto", "tensorrt", "onnxruntime")
RUNTIME_PRECISIONS = ("fp32", "int8")


class Segmenter:
    """Mode-level API over a runner; validates inputs so a wrong-size frame
    is a clear error instead of a backend crash."""

    def __init__(self, bundle: Bundle, runner, fallback_reason: str | None = None):
        self.bundle = bundle
        self.runner = runner
        self.fallback_reason = fallback_reason

    @property
    def has_fused(self) -> bool:
        return "fused" in self.bundle.graphs

    @property
    def backend_name(self) -> str:
        return self.runner.name

    @property
    def info(self) -> dict:
        info = dict(self.runner.info, bundle=str(self.bundle.root), graphs=sorted(self.bundle.graphs),
                    input_size=[self.bundle.height, self.bundle.width])
        if self.fallback_reason:
            info["fallback_reason"] = self.fallback_reason
        return info

    def _check(self, name: str, image: np.ndarray, channels: int | None) -> np.ndarray:
        shape = (self.bundle.height, self.bundle.width) + ((channels,) if channels else ())
        if image.dtype != np.uint8 or image.shape != shape:
            raise ValueError(f"{name} image must be uint8 {shape}, got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image)[None]

    def fused(self, eo: np.ndarray, ir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_fused:
            raise RuntimeError(f"bundle {self.bundle.root} has no fused graph")
        mask, conf = self.runner.run("fused", {"eo": self._check("EO", eo, 3), "ir": self._check("IR", ir, None)})
        return mask[0], conf[0]

    def ir_only(self, ir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask, conf = self.runner.run("ir_only", {"ir": self._check("IR", ir, None)})
        return mask[0], conf[0]

    def warm_up(self, runs: int = 2) -> None:
        """First runs allocate and tune; do them at load, not on the first camera frame."""
        eo = np.zeros((self.bundle.height, self.bundle.width, 3), np.uint8)
        ir = np.zeros((self.bundle.height, self.bundle.width), np.uint8)
        for _ in range(runs):
            self.ir_only(ir)
            if self.has_fused:
                self.fused(eo, ir)

    def close(self) -> None:
        self.runner.close()


def _runtime_graphs(bundle: Bundle) -> tuple[str, ...]:
    return tuple(g for g in ("fused", "ir_only") if g in bundle.graphs)


def _tensorrt_runner(bundle: Bundle, rebuild: bool, log=None, precision: str = "fp32"):
    from csk_ros.backends.tensorrt_backend import TensorRTRunner  # imports tensorrt; ImportError when absent

    # fp32 keeps TensorRT's own choice among the bundle's engines (fp16 as built by engines.build)
    return TensorRTRunner(bundle, _runtime_graphs(bundle), rebuild=rebuild, log=log,
                          precision="int8" if precision == "int8" else None)


def load_bundle(path, backend: str = "auto", rebuild: bool = False, warm_up: bool = True,
                intra_op_threads: int = 0, inter_op_threads: int = 0, providers: list[str] | None = None,
                log=None, ort_spinning: bool = False, precision: str = "fp32") -> Segmenter:
    """Load and validate a model bundle and both of its runtime graphs.

    Raises BundleError with a specific message for a bad bundle. With
    backend="auto", a TensorRT problem (not installed, no or stale engines,
    corrupt engine) falls back to ONNX Runtime and says why via `log` and
    `Segmenter.fallback_reason`. precision="int8" without INT8 graphs in the
    bundle is a BundleError at start-up (whatever the backend), never a
    silent fp32 run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in RUNTIME_PRECISIONS:
        raise ValueError(f"precision must be one of {RUNTIME_PRECISIONS}, got {precision!r}")
    bundle = load_manifest(path)
    if precision == "int8" and backend != "tensorrt":
        # checked before TensorRT so "auto" cannot fall back into it later
        problem = int8_graph_problem(bundle, _runtime_graphs(bundle))
        if problem:
            raise BundleError(problem)
    fallback_reason = None
    if backend in ("auto", "tensorrt"):
        segmenter = None
        try:
            segmenter = Segmenter(bundle, _tensorrt_runner(bundle, rebuild, log, precision))
            if warm_up:
                segmenter.warm_up()  # a CUDA failure here must fall back too, not crash the node
            return segmenter
        except ImportError as exc:
            if backend == "tensorrt":
                raise BundleError(f"backend 'tensorrt' needs the tensorrt and cuda-python packages: {exc}") from exc
            fallback_reason = f"TensorRT not available ({exc})"
        except Exception as exc:  # BundleError, CUDA/TensorRT runtime errors, a read-only bundle on rebuild ...
            if segmenter is not None:
                segmenter.close()
            if backend == "tensorrt":
                raise exc if isinstance(exc, BundleError) else BundleError(f"TensorRT backend failed: {exc}") from exc
            fallback_reason = f"TensorRT engines unusable: {exc}"
        if log:
            log(f"falling back to ONNX Runtime: {fallback_reason}")
    runner = OnnxRuntimeRunner(bundle, _runtime_graphs(bundle), intra_op_threads, inter_op_threads, providers,
                               allow_spinning=ort_spinning, precision=precision)
    segmenter = Segmenter(bundle, runner, fallback_reason)
    if warm_up:
        segmenter.warm_up()
    return segmenter


def load_configured(config, log=None) -> Segmenter:
    """`load_bundle` with a node config's settings (model_dir, backend, engines, ORT threads, precision): the one
    mapping the node's configure, its model swap and `python -m csk_ros.bag` share."""
    return load_bundle(config.model_dir, backend=config.backend, rebuild=config.rebuild_engines,
                       intra_op_threads=config.ort_threads, log=log, ort_spinning=config.ort_spinning,
                       precision=config.precision)


__all__ = ["BACKENDS", "RUNTIME_PRECISIONS", "Segmenter", "load_bundle", "load_configured", "OnnxRuntimeRunner",
           "BundleError"]
