"""Building TensorRT engines for a model bundle, and the pure helpers around it.

This module imports NOTHING from TensorRT or CUDA at import time: naming,
manifest records, I/O checks, the trtexec equivalent, the ONNX pre-flight
check are plain Python / numpy and are unit-tested on machines without a GPU.
Only `build_engine_bytes` and `inspect_engine_bytes` (and the calibrator in
engines/trt_calibration.py) import `tensorrt` / `cuda-python`, inside the
function, and raise ImportError with the install hint when they are absent.

Used by `python -m engines.build` (offline) and by the TensorRT runner when
the node is started with rebuild enabled (csk_ros.backends.tensorrt_backend).
It lives in backends/ beside that runner and engine_check.py, whose rules it
applies, so that nothing in backends/ imports back up into csk_ros.

TensorRT facts this code relies on (TensorRT 10 Python API reference; onnx-tensorrt's
docs/operators.md and ModelImporter.cpp for the parser's UINT8 rule):
- networks are always explicit-batch (the EXPLICIT_BATCH flag is ignored), so
  `create_network(0)`;
- UINT8 is accepted ONLY as a network input or output type; the ONNX parser
  rejects any node whose uint8 output is not a graph output ("TensorRT does not
  support UINT8 types for intermediate tensors"). Our graphs must Cast a uint8
  input to float before any other op touches it; `uint8_intermediate_problems`
  checks that without TensorRT;
- INT8 from a Q/DQ graph (explicit quantization; the bundle's "quantized"
  records) needs no calibrator: the scales are in the graph. TensorRT 10
  builds it weakly typed with the INT8 and FP16 flags (Q/DQ regions in INT8,
  the rest free to run in FP16); TensorRT 11, which has no precision flags,
  builds it strongly typed (the rest runs in the graph's float type);
- INT8 through a calibrator (implicit quantization) is the FALLBACK for bundles
  without a Q/DQ graph and works on TensorRT 10 only (deprecated since 10.1,
  removed in 11). Calibration batches are float32 for our uint8 inputs: TensorRT
  reads prod(shape) * 4 bytes per input (Polygraphy converts calibration data
  to float32 for the same reason); an exception in get_batch would end
  calibration early without an error, so the calibrator counts its batches and
  the build fails when it got fewer than it was given;
- cuda-python's major version must match the CUDA of the driver: JetPack 6 is
  CUDA 12.6, where cuda-python 13 (cuda-bindings 13: needs driver >= 580, no
  `cuda.cudart`) fails at start-up; pin `cuda-python<13` there
  (CUDA_PYTHON_PINS).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np

from csk_ros.backends.engine_check import expected_io, explicit_int8, io_problems, qdq_problems
from csk_ros.bundle import (
    GRAPH_INPUTS,
    MANIFEST,
    PRECISIONS,
    Bundle,
    BundleError,
    EngineRecord,
    atomic_write_bytes,
    load_manifest,
    sha256_of,
    write_manifest,
)

# cuda-python for each CUDA major version: cuda-python (cuda-bindings) 13 needs a driver >= 580 and
# dropped `cuda.cudart`, so CUDA 12 machines (JetPack 6.x: CUDA 12.6) must stay on 12.x.
CUDA_PYTHON_PINS = {12: "cuda-python>=12.6,<13", 13: "cuda-python>=13,<14"}
INSTALL_HINT = ("install the TensorRT Python bindings and cuda-python matching the CUDA major version: "
                f"`pip install tensorrt-cu12 '{CUDA_PYTHON_PINS[12]}'` on a CUDA 12 desktop/server GPU; on Jetson "
                f"the JetPack package `python3-libnvinfer` (apt) plus `pip install '{CUDA_PYTHON_PINS[12]}'` on "
                f"JetPack 6 (CUDA 12.6) or `pip install '{CUDA_PYTHON_PINS[13]}'` on JetPack 7 (CUDA 13); "
                "scripts/deploy_jetson.sh does this")
DEFAULT_WORKSPACE_MB = 1024
DEFAULT_CALIB_IMAGES = 300


class EngineBuildError(RuntimeError):
    """TensorRT could not build an engine; the message lists the reasons."""


# --------------------------------------------------------------------------- imports

def import_tensorrt():
    """The `tensorrt` module (its return type is the module, so pyright checks callers against the
    stubs), or ImportError with the install hint. A `tensorrt` folder holding only stubs (tensorrt-stubs
    installed into site-packages) imports as an empty namespace package: refused as missing too."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ImportError(f"TensorRT Python bindings not found ({exc}); {INSTALL_HINT}") from exc
    if not hasattr(tensorrt, "Builder"):
        where = ", ".join(getattr(tensorrt, "__path__", []) or [str(getattr(tensorrt, "__file__", "?"))])
        raise ImportError(f"the `tensorrt` package at {where} has no bindings (type stubs only, e.g. tensorrt-stubs "
                          f"installed without --target); {INSTALL_HINT}")
    return tensorrt


def import_cudart():
    """cuda-python's runtime module: `cuda.bindings.runtime` (cuda-python >= 12.6)
    or the older `cuda.cudart`."""
    try:
        from cuda.bindings import runtime as cudart  # pyright: ignore[reportMissingImports] (no stubs exist)
    except ImportError:
        try:
            from cuda import cudart  # pyright: ignore[reportMissingImports]
        except ImportError as exc:
            raise ImportError(f"cuda-python not found ({exc}); {INSTALL_HINT}") from exc
    return cudart


def cuda_check(result, what: str = "CUDA call") -> Any:
    """cuda-python calls return (error, *values); raise on error, return the value(s) (Any: one value,
    or a tuple of them, whatever the call returns)."""
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:
        name = getattr(err, "name", None)  # cuda-python's error enums: the name says what went wrong
        raise RuntimeError(f"{what} failed: {name} ({int(err)})" if name else f"{what} failed: {err}")
    return values[0] if len(values) == 1 else values


def _cuda_version(version: int) -> str:
    """CUDA's integer version (12060) as "12.6"."""
    return f"{version // 1000}.{version % 1000 // 10}"


def cuda_driver_hint(error_name: str, driver_version: int, runtime_version: int) -> str:
    """What to do about a failed CUDA start-up, from cudaDriverGetVersion / cudaRuntimeGetVersion.

    cuda-bindings (12.9 and 13.x alike) return cudaErrorInsufficientDriver both when the driver is
    older than cuda-python's CUDA and when no driver is installed at all; only the driver version
    (0: no driver) tells the two apart, so the "pin cuda-python" advice is given only where it helps."""
    if "InsufficientDriver" not in error_name:
        return ""
    if driver_version <= 0:
        return ("; no NVIDIA driver is installed (cudaDriverGetVersion reports none): install the GPU driver "
                "(JetPack on a Jetson), or run on ONNX Runtime")
    driver, runtime = driver_version // 1000, runtime_version // 1000
    if 0 < driver < runtime and driver in CUDA_PYTHON_PINS:
        return (f"; cuda-python (CUDA {_cuda_version(runtime_version)}) is newer than this driver's CUDA "
                f"{_cuda_version(driver_version)}: install '{CUDA_PYTHON_PINS[driver]}'")
    return (f"; this driver's CUDA {_cuda_version(driver_version)} is older than cuda-python's CUDA "
            f"{_cuda_version(runtime_version)}: update the driver or install the cuda-python of the driver's CUDA")


TENSORRT_NO_CUDA = "factory function returned nullptr"  # real trt.Runtime / trt.Builder when CUDA cannot start


def create_tensorrt(factory, logger, what: str):
    """`factory(logger)` for trt.Runtime / trt.Builder. Real TensorRT raises TypeError("pybind11::init():
    factory function returned nullptr") when CUDA cannot initialise (no GPU, no or too old a driver),
    which reads like a programming error: turn that one into an EngineBuildError that says what to check."""
    try:
        return factory(logger)
    except TypeError as exc:
        if TENSORRT_NO_CUDA not in str(exc):
            raise
        raise EngineBuildError(f"TensorRT could not create its {what} ({exc}): CUDA did not initialise here; check "
                               "the GPU and driver with `nvidia-smi` (JetPack on a Jetson) and that cuda-python "
                               "matches the driver's CUDA") from exc


# --------------------------------------------------------------------------- naming

_DROP_TOKENS = {"nvidia", "geforce", "tesla", "quadro", "jetson", "agx", "gpu", "graphics", "nvgpu", "pcie",
                "sxm", "sxm2", "sxm4", "sxm5", "nvl", "mig", "laptop", "edition", "generation"}
_MEMORY_TOKEN = re.compile(r"^(\d+(gb|g|mb)|hbm\d*e?|gddr\d*x?)$")


def gpu_slug(gpu_name: str, max_len: int = 16) -> str:
    """Short file-name tag for a GPU. Rule: lowercase, split on non-alphanumerics,
    drop vendor/brand/form-factor words (nvidia, geforce, tesla, quadro, jetson,
    agx, pcie, sxm*, ...) and memory tokens (80gb, hbm3, gddr6x), join the rest
    without separators, cut to 16 characters; "gpu" when nothing is left.
    "NVIDIA Jetson AGX Orin" -> "orin", "Orin (nvgpu)" -> "orin", "NVIDIA Jetson
    Orin Nano" -> "orinnano", "NVIDIA H100 80GB HBM3" -> "h100", "NVIDIA GeForce
    RTX 4090" -> "rtx4090", "Tesla T4" -> "t4". The slug only names files: the
    manifest keeps the full name, and that is what engines are matched on."""
    tokens = [t for t in re.split(r"[^0-9a-z]+", gpu_name.lower()) if t]
    kept = [t for t in tokens if t not in _DROP_TOKENS and not _MEMORY_TOKEN.match(t)]
    return "".join(kept)[:max_len] or "gpu"


def _short_version(trt_version: str) -> str:
    parts = re.findall(r"\d+", trt_version)
    return ".".join(parts[:2]) if parts else "unknown"


def engine_file_name(graph: str, precision: str, trt_version: str, gpu_name: str, sm_count: int | None = None) -> str:
    """`<graph>.<precision>.trt<major.minor>.<gpu slug>[-<N>sm].engine`, e.g.
    `ir_only.fp16.trt10.3.orin-16sm.engine` (full versions live in the manifest).
    The SM count tells apart Orin modules that report the same name (AGX Orin
    64 GB: 16 SMs, 32 GB: 14, Orin NX / Nano: 4 to 8)."""
    if graph not in GRAPH_INPUTS:
        raise ValueError(f"unknown graph {graph!r} (expected one of {sorted(GRAPH_INPUTS)})")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    sms = f"-{int(sm_count)}sm" if sm_count else ""
    return f"{graph}.{precision}.trt{_short_version(trt_version)}.{gpu_slug(gpu_name)}{sms}.engine"


def source_graph(bundle: Bundle, graph: str, precision: str):
    """The ONNX record an engine of `graph` at `precision` is built from (and whose
    hash its record carries): the Q/DQ graph for int8 when the bundle has one."""
    return bundle.source_graph(graph, precision)


def calibration_cache_path(bundle: Bundle, graph: str, template: str | None = None, shared: bool = False) -> Path:
    """Where the INT8 calibration cache of `graph` lives. Default: in the bundle,
    named after the ONNX hash, so a re-exported graph never reuses stale scales.
    A user path may contain '{graph}'; without it, a path `shared` by several
    graphs gets '.<graph>' inserted before its extension."""
    if not template:
        return bundle.root / f"{graph}.{bundle.graphs[graph].sha256[:12]}.int8.calib"
    if "{graph}" in template:
        return Path(template.replace("{graph}", graph)).expanduser()
    path = Path(template).expanduser()
    return path.with_name(f"{path.stem}.{graph}{path.suffix}") if shared else path


def trtexec_command(onnx_path, engine_path, precision: str, workspace_mb: int, calib_cache=None,
                    strongly_typed: bool = False) -> str:
    """The trtexec line that builds the same engine (TensorRT 10 flags).
    INT8 also enables FP16 for the layers TensorRT cannot run in INT8 (argmax,
    reductions), as build_engine_bytes does. Without --calib trtexec uses
    placeholder INT8 scales, fine for timing but not for accuracy. `strongly_typed`
    (build_plan's choice for Q/DQ graphs from TensorRT 10.12 on): --stronglyTyped, no precision flags."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
             f"--memPoolSize=workspace:{int(workspace_mb)}M"]
    if strongly_typed:
        return " ".join(shlex.quote(str(p)) for p in [*parts, "--stronglyTyped"])
    if precision in ("fp16", "int8"):
        parts.append("--fp16")
    if precision == "int8":
        parts.append("--int8")
        if calib_cache:
            parts.append(f"--calib={calib_cache}")
    return " ".join(shlex.quote(str(p)) for p in parts)


# --------------------------------------------------------------------------- I/O checks

def rebuild_precision(bundle: Bundle, graph: str, precision: str | None = None) -> str:
    """Precision for an automatic rebuild: the one asked for, else that of the newest
    recorded engine of the graph, else fp16. INT8 is chosen implicitly only when
    the bundle has the graph's Q/DQ version (explicit quantization); calibrator
    INT8 needs calibration images, which a node starting up does not have."""
    if precision:
        return precision
    previous = [e.precision for e in bundle.engines_for(graph)
                if e.precision != "int8" or (explicit_int8(bundle, graph, "int8") and not qdq_problems(bundle, graph))]
    return previous[-1] if previous else "fp16"


# --------------------------------------------------------------------------- TensorRT build

def format_parser_error(error) -> str:
    """One line for an ONNX parser error (TensorRT's IParserError)."""
    def call(name):
        fn = getattr(error, name, None)
        try:
            return fn() if callable(fn) else None
        except Exception:
            return None
    desc = call("desc") or str(error)
    node, node_name, op = call("node"), call("node_name"), call("node_operator")
    where = " ".join(p for p in (f"node {node}" if node not in (None, -1) else "",
                                 f"'{node_name}'" if node_name else "", f"({op})" if op else "") if p)
    return f"{where}: {desc}" if where else str(desc)


WEAK_TYPING_DEPRECATED = (10, 12)  # BuilderFlag.FP16 / INT8 (weak typing) deprecated in 10.12, removed in 11


def _major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in re.findall(r"\d+", str(version))[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def build_plan(trt_version: str, has_flags: bool, has_strong_typing: bool, has_calibrator: bool, precision: str,
               quantized: bool) -> tuple[bool, tuple[str, ...], str | None]:
    """(strongly typed network, builder flags, note for the log) for one build, from the TensorRT 10
    and 11 docs: weak typing (BuilderFlag.FP16 / INT8) is deprecated since 10.12 and removed in 11,
    where every network is strongly typed; calibrators are deprecated since 10.1 and removed in 11.
    - int8 from a Q/DQ graph: strongly typed where weak typing is deprecated or gone (the documented
      migration: Q/DQ regions in INT8, the rest in the graph's float type); on 10.0-10.11 the INT8 +
      FP16 flags (the rest may run in fp16);
    - fp16: only weak typing gives it from our fp32 graphs (strong typing would need an fp16 graph),
      so the FP16 flag, with a note from 10.12 on (TensorRT then warns), and an error where it is gone;
    - int8 by calibration: TensorRT 10 only, INT8 + FP16 flags."""
    weak = {"fp16": ("FP16",), "int8": ("FP16", "INT8")}.get(precision, ())
    deprecated = _major_minor(trt_version) >= WEAK_TYPING_DEPRECATED
    if precision == "int8" and quantized and (deprecated or not has_flags):
        if not has_strong_typing:
            raise EngineBuildError(f"TensorRT {trt_version} has neither INT8/FP16 builder flags nor strongly typed "
                                   "networks; use TensorRT 10 or later")
        return True, (), (f"strongly typed build (weak typing is {'deprecated' if has_flags else 'gone'} in TensorRT "
                          f"{trt_version}): Q/DQ regions run in INT8, the rest in the graph's float type")
    if weak and (not has_flags or (precision == "int8" and not quantized and not has_calibrator)):
        what = f"{'/'.join(weak)} builder precision flag" if not has_flags else "INT8 calibrator"
        raise EngineBuildError(f"TensorRT {trt_version} has no {what} (TensorRT 11 removed weak typing and calibrator "
                               "INT8): build fp32 here, INT8 from the bundle's Q/DQ graph (python -m "
                               "engines.quantize), or use TensorRT 10 (JetPack 6) for fp16 engines")
    note = None
    if weak and deprecated:
        note = (f"BuilderFlag.{' / '.join(weak)} (weak typing) is deprecated since TensorRT 10.12 and removed in 11; "
                f"TensorRT {trt_version} warns about it, the engine is built as before")
    return False, weak, note


def tensorrt_logger(trt=None):
    """The ONE trt.Logger of this process: TensorRT registers the first logger it is given globally and
    warns ("logger ... differs") when a Builder or Runtime later gets another one, as a runtime rebuild
    did. Re-created only when a different `tensorrt` module is imported (the tests' double)."""
    trt = trt or import_tensorrt()
    if _LOGGER.get("module") is not trt:
        _LOGGER.update(module=trt, logger=trt.Logger(trt.Logger.WARNING))
    return _LOGGER["logger"]


_LOGGER: dict = {}


def build_engine_bytes(onnx_path, precision: str, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                       calibrator=None, log=print, quantized: bool = False) -> bytes:
    """Parse the ONNX graph and build a serialized engine (the bytes of a .engine file).

    precision int8: `quantized=True` means `onnx_path` is a Q/DQ graph (explicit
    quantization, no calibrator); otherwise `calibrator` (make_entropy_calibrator)
    is required: the TensorRT-10-only fallback for bundles without Q/DQ graphs.
    Typing and flags per TensorRT version: see build_plan."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibrator is None and not quantized:
        raise ValueError("INT8 needs the bundle's Q/DQ graph (python -m engines.quantize) or, on TensorRT 10 only, "
                         "a calibrator on real EO/IR images: see make_entropy_calibrator")
    trt = import_tensorrt()
    strongly_typed, flags, note = tensorrt_build_plan(precision, quantized, trt)
    strong_flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    logger = tensorrt_logger(trt)
    builder = create_tensorrt(trt.Builder, logger, "Builder")
    network = builder.create_network(1 << int(strong_flag) if strongly_typed and strong_flag is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [format_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}:\n  " +
                               "\n  ".join(errors or ["(no parser error recorded)"]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if note and log:
        log(f"{Path(onnx_path).name}: {note}")
    if precision == "int8" and not quantized and calibrator is not None:
        if log:
            log(f"{Path(onnx_path).name}: INT8 by calibration (implicit quantization) is the TensorRT-10-only "
                "fallback for bundles without a Q/DQ graph; `python -m engines.quantize` adds one")
        config.int8_calibrator = calibrator  # deprecated since 10.1, removed in 11
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    verify = getattr(calibrator, "verify", None) if precision == "int8" and not quantized else None
    if callable(verify):
        verify(log)  # fewer batches than given, or an exception inside get_batch: fail loudly
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path} ({precision}); its log "
                               "above says why (unsupported layer, too little workspace, ...)")
    if log:
        how = " from Q/DQ scales" if quantized and precision == "int8" else ""
        log(f"built {Path(onnx_path).name} ({precision}{how}) in {time.monotonic() - started:.0f} s")
    return bytes(serialized)


def tensorrt_build_plan(precision: str, quantized: bool, trt=None) -> tuple[bool, tuple[str, ...], str | None]:
    """build_plan for the installed TensorRT (what build_engine_bytes and the printed trtexec line use)."""
    trt = trt or import_tensorrt()
    strong = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None) is not None
    has_flags = all(hasattr(trt.BuilderFlag, f) for f in ("FP16", "INT8"))
    return build_plan(str(trt.__version__), has_flags, strong, hasattr(trt, "IInt8EntropyCalibrator2"), precision,
                      quantized)


def inspect_engine_bytes(data: bytes) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """Deserialize an engine and return its I/O tensors: name -> (mode, shape, dtype)."""
    trt = import_tensorrt()
    engine = create_tensorrt(trt.Runtime, tensorrt_logger(trt), "Runtime").deserialize_cuda_engine(data)
    if engine is None:
        raise EngineBuildError("the engine could not be deserialized (corrupt or built by another TensorRT)")
    return engine_io(trt, engine)


def engine_io(trt, engine) -> dict[str, tuple[str, tuple[int, ...], str]]:
    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        try:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        except TypeError:  # types numpy lacks (bf16, fp8, int4)
            dtype = str(engine.get_tensor_dtype(name))
        io[name] = (mode, tuple(int(d) for d in engine.get_tensor_shape(name)), dtype)
    return io


# --------------------------------------------------------------------------- manifest

def record_engine(bundle_dir, graph: str, file_name: str, precision: str, onnx_sha256: str, engine_sha256: str,
                  tensorrt_version: str, gpu_name: str, compute_capability: str, sm_count: int | None = None,
                  **extra) -> dict:
    """Add an engine record to manifest.json atomically, replacing any record for the
    same graph + precision + GPU (one engine per graph, precision and GPU model:
    name and SM count). The rewritten manifest is validated with load_manifest
    before this returns."""
    root = Path(bundle_dir).expanduser().resolve()
    load_manifest(root, verify_hashes=False)  # a valid bundle to start from
    manifest = json.loads((root / MANIFEST).read_text())
    record: dict[str, Any] = dict(graph=graph, file=file_name, precision=precision, onnx_sha256=onnx_sha256,
                                  sha256=engine_sha256, tensorrt_version=str(tensorrt_version), gpu_name=gpu_name,
                                  compute_capability=str(compute_capability), **extra)
    if sm_count is not None:
        record["sm_count"] = int(sm_count)
    kept = [e for e in manifest.get("engines") or []
            if not (e.get("graph") == graph and e.get("precision") == precision and e.get("gpu_name") == gpu_name
                    and e.get("sm_count") == record.get("sm_count"))]
    manifest["engines"] = kept + [record]
    write_manifest(root, manifest)
    load_manifest(root, verify_hashes=False)
    return record


def build_and_record(bundle: Bundle, graph: str, precision: str, runtime_info: tuple, build_fn,
                     inspect_fn=None, log=print, **extra) -> EngineRecord:
    """Build one engine with `build_fn(source_record) -> bytes`, check its I/O with
    `inspect_fn(bytes)` (when given), write it atomically into the bundle and record
    it. `runtime_info` is (TensorRT version, GPU name, compute capability[, SM
    count]). The source is the graph's Q/DQ record for int8 when the bundle has
    one (explicit quantization), else the float graph; the engine record carries
    its hash. Nothing is written unless the engine is complete and matches the contract."""
    trt_version, gpu_name, compute_capability = runtime_info[:3]
    sm_count = runtime_info[3] if len(runtime_info) > 3 else None
    record = source_graph(bundle, graph, precision)
    if precision == "int8" and qdq_problems(bundle, graph):
        raise EngineBuildError("; ".join(qdq_problems(bundle, graph)))
    if sha256_of(record.path) != record.sha256:
        raise BundleError(f"{record.path.name} changed since the manifest was written; re-export the bundle")
    file_name = engine_file_name(graph, precision, trt_version, gpu_name, sm_count)
    if precision == "int8":
        extra.setdefault("quantization", "explicit-qdq" if explicit_int8(bundle, graph, precision) else "calibrator")
    data = build_fn(record)
    if not data:
        raise EngineBuildError(f"building {file_name} produced no engine")
    if inspect_fn is not None:
        problems = io_problems(inspect_fn(data), expected_io(bundle, graph), file_name)
        if problems:
            raise EngineBuildError("; ".join(problems))
    atomic_write_bytes(bundle.root / file_name, data)
    record_engine(bundle.root, graph, file_name, precision, onnx_sha256=record.sha256,
                  engine_sha256=hashlib.sha256(data).hexdigest(), tensorrt_version=trt_version, gpu_name=gpu_name,
                  compute_capability=compute_capability, sm_count=sm_count,
                  built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra)
    fresh = load_manifest(bundle.root, verify_hashes=False)
    bundle.engines[:] = fresh.engines
    bundle.manifest.clear()
    bundle.manifest.update(fresh.manifest)
    if log:
        log(f"wrote {bundle.root / file_name} ({len(data) / 2**20:.1f} MiB) and recorded it in {MANIFEST}")
    return next(e for e in bundle.engines if e.path.name == file_name)


__all__ = ["INSTALL_HINT", "CUDA_PYTHON_PINS", "DEFAULT_WORKSPACE_MB", "EngineBuildError", "import_tensorrt",
           "import_cudart", "cuda_check", "cuda_driver_hint", "create_tensorrt",
           "gpu_slug", "engine_file_name", "calibration_cache_path", "trtexec_command",
           "source_graph", "rebuild_precision", "format_parser_error",
           "build_plan", "tensorrt_build_plan", "tensorrt_logger", "build_engine_bytes", "inspect_engine_bytes",
           "engine_io", "record_engine", "build_and_record"]
