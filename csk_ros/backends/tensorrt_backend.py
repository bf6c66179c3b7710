"""TensorRT runner: the bundle's engines, run with the TensorRT 10 tensor API.

Kept thin on purpose: everything that can be checked without a GPU (which
engine fits this machine, I/O contract, naming, rebuilding) lives in
csk_ros.backends.trt_build and is unit-tested there. Importing this module imports
`tensorrt` and `cuda-python`; when they are missing it raises ImportError with
the install hint, which load_bundle turns into a fallback (backend="auto") or
a clear error (backend="tensorrt").

Memory: one pinned host buffer and one device buffer per I/O tensor name
(eo, ir, mask, confidence), shared by the fused and IR-only engines because
their tensors have identical shapes; one CUDA stream; and ONE block of device
scratch memory sized to the larger engine's need, given to both execution
contexts (USER_MANAGED allocation), since only one engine runs at a time.
A lock serialises run() so that sharing stays safe with multi-threaded executors.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from csk_ros.backends.engine_check import expected_io, explicit_int8, io_problems, select_engine
from csk_ros.backends.trt_build import (
    DEFAULT_WORKSPACE_MB,
    EngineBuildError,
    build_and_record,
    build_engine_bytes,
    create_tensorrt,
    cuda_check,
    cuda_driver_hint,
    engine_io,
    import_cudart,
    import_tensorrt,
    inspect_engine_bytes,
    rebuild_precision,
    tensorrt_logger,
)
from csk_ros.bundle import Bundle, BundleError

trt = import_tensorrt()  # ImportError (with the install hint) when absent
cudart = import_cudart()


def _native_handle():
    """cuda-python's documented way to get a CUDA object's handle: cuda.bindings.utils.get_cuda_native_handle
    (cuda-bindings >= 12.8; int(obj) is deprecated there and subject to removal), else int() (older
    cuda-python, where it is the handle). stream.getPtr() would be the address of the Python object's
    storage (wrong)."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle  # pyright: ignore[reportMissingImports]
    except ImportError:
        return int
    return get_cuda_native_handle


_stream_handle = _native_handle()


def tensorrt_runtime_info() -> tuple[str, str, str, int]:
    """(TensorRT version, GPU name, compute capability "major.minor", SM count) of
    this machine. The SM count tells apart GPUs that share a name (Orin modules).
    Raises BundleError saying what to fix when CUDA cannot start."""
    try:
        device = cuda_check(cudart.cudaGetDevice(), "cudaGetDevice")
        props = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    except RuntimeError as exc:
        raise BundleError(f"no usable CUDA GPU for TensorRT: {exc}{_driver_hint(exc)}") from exc
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return (str(trt.__version__), name.split("\x00", 1)[0].strip(), f"{props.major}.{props.minor}",
            int(props.multiProcessorCount))


def _driver_hint(exc: Exception) -> str:
    """cuda_driver_hint with this machine's driver and cuda-python CUDA versions (0 when unknown)."""
    def version(call) -> int:
        try:
            err, value = call()
            return int(value) if int(err) == 0 else 0
        except Exception:  # the hint is best effort: the error itself is already in the message
            return 0
    return cuda_driver_hint(str(exc), version(cudart.cudaDriverGetVersion), version(cudart.cudaRuntimeGetVersion))


def create_runtime():
    """trt.Runtime, or a BundleError (so backend "auto" falls back) when CUDA cannot initialise."""
    try:
        return create_tensorrt(trt.Runtime, tensorrt_logger(trt), "Runtime")
    except EngineBuildError as exc:
        raise BundleError(f"no usable CUDA GPU for TensorRT: {exc}") from exc


class TensorRTRunner:
    """Runner protocol of csk_ros.backends: name, info, run(graph, feeds), close()."""

    name = "tensorrt"

    def __init__(self, bundle: Bundle, graphs: tuple[str, ...], rebuild: bool = False, precision: str | None = None,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, log=None):
        self._lock = threading.Lock()
        self._host, self._device, self._contexts, self._engines, self._inputs = {}, {}, {}, {}, {}
        self._scratch, self._stream, self.device_memory_bytes = None, None, 0
        runtime_info = tensorrt_runtime_info()  # before trt.Runtime: without CUDA it only says "nullptr"
        self._runtime = create_runtime()
        records, rebuilt = {}, []
        for graph in graphs:
            record, problems = select_engine(bundle, graph, *runtime_info[:3], precision=precision,
                                             sm_count=runtime_info[3])
            if record is None and rebuild:
                if log:
                    log(f"no usable TensorRT engine for '{graph}' ({'; '.join(problems)}); building one now "
                        "(this takes minutes on a Jetson)")
                wanted = rebuild_precision(bundle, graph, precision)
                quantized = explicit_int8(bundle, graph, wanted)  # int8 only from the bundle's Q/DQ graph
                try:
                    record = build_and_record(
                        bundle, graph, wanted, runtime_info,
                        lambda rec: build_engine_bytes(rec.path, wanted, workspace_mb, log=log, quantized=quantized),
                        inspect_fn=inspect_engine_bytes, log=log, workspace_mb=workspace_mb, via="tensorrt-runtime")
                except (EngineBuildError, ValueError) as exc:  # int8 cannot be rebuilt without calibration images
                    raise BundleError(f"rebuilding the TensorRT engine for '{graph}' failed: {exc}") from exc
                rebuilt.append(graph)
            elif record is None:
                raise BundleError(f"no usable TensorRT engine for graph '{graph}': " + "; ".join(problems))
            records[graph] = record
        try:
            self._load(bundle, records)
        except RuntimeError as exc:  # CUDA errors (out of memory, ...): a BundleError lets "auto" fall back
            self.close()
            raise BundleError(f"TensorRT engines could not be loaded: {exc}") from exc
        except BaseException:
            self.close()
            raise
        self.info = {"backend": "tensorrt", "tensorrt": runtime_info[0], "gpu": runtime_info[1],
                     "compute_capability": runtime_info[2], "sm_count": runtime_info[3],
                     "engines": {g: r.path.name for g, r in records.items()},
                     "precision": {g: r.precision for g, r in records.items()},
                     "device_memory_bytes": self.device_memory_bytes, "rebuilt": rebuilt}

    def _load(self, bundle: Bundle, records: dict) -> None:
        for graph, record in records.items():
            engine = None
            try:
                engine = self._runtime.deserialize_cuda_engine(record.path.read_bytes())
            except Exception:  # some TensorRT versions raise instead of returning None
                engine = None
            if engine is None:
                raise BundleError(f"engine {record.path.name} could not be deserialized (corrupt or built by "
                                  "another TensorRT); rebuild it with `python -m engines.build`")
            problems = io_problems(engine_io(trt, engine), expected_io(bundle, graph), record.path.name)
            if problems:
                raise BundleError("; ".join(problems))
            self._engines[graph] = engine
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        for graph in records:  # one pinned + one device buffer per tensor name, shared across engines
            for name, (_, shape, _) in expected_io(bundle, graph).items():
                if name not in self._device:
                    nbytes = int(np.prod(shape))
                    ptr = int(cuda_check(cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
                    pinned = (ctypes.c_uint8 * nbytes).from_address(ptr)
                    self._host[name] = np.ctypeslib.as_array(pinned).reshape(shape)
                    self._device[name] = cuda_check(cudart.cudaMalloc(nbytes), "cudaMalloc")
        # device_memory_size_v2 (TensorRT 10.1+; 11 has only it) may legitimately be 0: test for presence, not truth
        sizes = [int(e.device_memory_size_v2 if hasattr(e, "device_memory_size_v2") else e.device_memory_size)
                 for e in self._engines.values()]
        self.device_memory_bytes = max(sizes + [256])
        self._scratch = cuda_check(cudart.cudaMalloc(self.device_memory_bytes), "cudaMalloc")
        for graph, engine in self._engines.items():
            context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
            if context is None:
                raise BundleError(f"TensorRT could not create an execution context for {records[graph].path.name}")
            if hasattr(context, "set_device_memory"):  # TensorRT >= 10.1: pointer + size
                context.set_device_memory(int(self._scratch), self.device_memory_bytes)
            else:
                context.device_memory = int(self._scratch)
            for i in range(engine.num_io_tensors):
                tensor = engine.get_tensor_name(i)
                if not context.set_tensor_address(tensor, int(self._device[tensor])):  # False: refused, not bound
                    raise BundleError(f"TensorRT refused the device address of tensor '{tensor}' for "
                                      f"{records[graph].path.name} (see the TensorRT log); rebuild the engine")
            self._contexts[graph] = context
            self._inputs[graph] = bundle.graphs[graph].inputs

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            context, stream = self._contexts[graph], self._stream
            if stream is None:
                raise RuntimeError("the TensorRT runner is closed")
            for name in self._inputs[graph]:
                host = self._host[name]
                np.copyto(host, feeds[name], casting="no")
                cuda_check(cudart.cudaMemcpyAsync(self._device[name], host.ctypes.data, host.nbytes,
                                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "H2D copy")
            if not context.execute_async_v3(_stream_handle(stream)):
                raise RuntimeError(f"TensorRT execution of '{graph}' failed (see the TensorRT log)")
            for name in ("mask", "confidence"):
                host = self._host[name]
                cuda_check(cudart.cudaMemcpyAsync(host.ctypes.data, self._device[name], host.nbytes,
                                                  cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "D2H copy")
            cuda_check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
            return self._host["mask"].copy(), self._host["confidence"].copy()

    def close(self) -> None:
        """Free everything; safe to call twice. Contexts go before the memory they use."""
        with self._lock:
            self._contexts.clear()
            self._engines.clear()
            if self._stream is not None:
                cudart.cudaStreamSynchronize(self._stream)
            for ptr in self._device.values():
                cudart.cudaFree(ptr)
            for array in self._host.values():
                cudart.cudaFreeHost(array.ctypes.data)
            if self._scratch is not None:
                cudart.cudaFree(self._scratch)
            if self._stream is not None:
                cudart.cudaStreamDestroy(self._stream)
            self._device, self._host, self._scratch, self._stream = {}, {}, None, None


__all__ = ["TensorRTRunner", "tensorrt_runtime_info"]
