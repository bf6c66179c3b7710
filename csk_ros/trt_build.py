"""Building TensorRT engines for a model bundle, and the pure helpers around it.

This module imports NOTHING from TensorRT or CUDA at import time: naming,
manifest records, I/O checks, the trtexec equivalent, the ONNX pre-flight
check are plain Python / numpy and are unit-tested on machines without a GPU.
Only `build_engine_bytes` and `inspect_engine_bytes` (and the calibrator in
engines/trt_calibration.py) import `tensorrt` / `cuda-python`, inside the
function, and raise ImportError with the install hint when they are absent.

Used by `python -m engines.build` (offline) and by the TensorRT runner when
the node is started with rebuild enabled (csk_ros.backends.tensorrt_backend).

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

import numpy as np

from csk_ros.bundle import (
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    MANIFEST,
    PRECISIONS,
    Bundle,
    BundleError,
    EngineRecord,
    atomic_write_bytes,
    engine_problems,
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
ENGINE_DTYPE = "uint8"  # every I/O tensor of our graphs (contract 3)


class EngineBuildError(RuntimeError):
    """TensorRT could not build an engine; the message lists the reasons."""


# --------------------------------------------------------------------------- imports

def import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise ImportError(f"TensorRT Python bindings not found ({exc}); {INSTALL_HINT}") from exc
    return tensorrt


def import_cudart():
    """cuda-python's runtime module: `cuda.bindings.runtime` (cuda-python >= 12.6)
    or the older `cuda.cudart`."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise ImportError(f"cuda-python not found ({exc}); {INSTALL_HINT}") from exc
    return cudart


def cuda_check(result, what: str = "CUDA call"):
    """cuda-python calls return (error, *values); raise on error, return the value(s)."""
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:
        name = getattr(err, "name", None)  # cuda-python's error enums: the name says what went wrong
        raise RuntimeError(f"{what} failed: {name} ({int(err)})" if name else f"{what} failed: {err}")
    return values[0] if len(values) == 1 else values


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


def explicit_int8(bundle: Bundle, graph: str, precision: str) -> bool:
    """True when an engine of `graph` at `precision` is built from the bundle's
    Q/DQ graph (explicit quantization, no calibrator)."""
    return precision == "int8" and graph in (getattr(bundle, "quantized", None) or {})


def qdq_problems(bundle: Bundle, graph: str) -> list[str]:
    """Why the bundle's Q/DQ graph of `graph` cannot become a TensorRT engine. engines.quantize
    records `tensorrt_compatible`: its default (ONNX Runtime CPU) flavour has asymmetric uint8
    activations, while TensorRT's explicit quantization takes symmetric int8 only (zero point 0)."""
    record = ((bundle.manifest.get("quantized") or {}).get(graph) or {}) if explicit_int8(bundle, graph, "int8") else {}
    if record.get("tensorrt_compatible") is False:
        return [f"{record.get('file', graph + '.int8.onnx')} is the ONNX Runtime flavour (asymmetric uint8 "
                "activations); TensorRT's explicit quantization takes symmetric int8 only: re-run `python -m "
                f"engines.quantize --bundle {bundle.root} --activations int8-symmetric`, or build fp16"]
    return []


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


def trtexec_command(onnx_path, engine_path, precision: str, workspace_mb: int, calib_cache=None) -> str:
    """The trtexec line that builds the same engine (TensorRT 10 flags).
    INT8 also enables FP16 for the layers TensorRT cannot run in INT8 (argmax,
    reductions), as build_engine_bytes does. Without --calib trtexec uses
    placeholder INT8 scales, fine for timing but not for accuracy."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
             f"--memPoolSize=workspace:{int(workspace_mb)}M"]
    if precision in ("fp16", "int8"):
        parts.append("--fp16")
    if precision == "int8":
        parts.append("--int8")
        if calib_cache:
            parts.append(f"--calib={calib_cache}")
    return " ".join(shlex.quote(str(p)) for p in parts)


# --------------------------------------------------------------------------- I/O checks

def expected_io(bundle: Bundle, graph: str) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """name -> (mode, shape, dtype) that an engine for `graph` must have."""
    h, w = bundle.height, bundle.width
    shapes = {"eo": (1, h, w, 3), "ir": (1, h, w), "mask": (1, h, w), "confidence": (1, h, w)}
    io = {name: ("input", shapes[name], ENGINE_DTYPE) for name in bundle.graphs[graph].inputs}
    io.update({name: ("output", shapes[name], ENGINE_DTYPE) for name in GRAPH_OUTPUTS})
    return io


def io_problems(actual: dict, expected: dict, where: str) -> list[str]:
    """Compare an engine's I/O tensors (name -> (mode, shape, dtype)) with the contract."""
    problems = []
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    if missing or extra:
        problems.append(f"{where}: I/O tensors {sorted(actual)} differ from the manifest's {sorted(expected)}"
                        + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
    for name in sorted(set(actual) & set(expected)):
        mode, shape, dtype = actual[name]
        e_mode, e_shape, e_dtype = expected[name]
        if (mode, tuple(shape), dtype) != (e_mode, tuple(e_shape), e_dtype):
            problems.append(f"{where}: tensor '{name}' is {mode} {dtype} {list(shape)}, the manifest says "
                            f"{e_mode} {e_dtype} {list(e_shape)}")
    return problems


def recorded_sm_count(bundle: Bundle, engine: EngineRecord) -> int | None:
    """The SM count an engine record carries (None for records written before
    csk_ros recorded it). Kept in the raw manifest: EngineRecord predates it."""
    for rec in bundle.manifest.get("engines") or []:
        if isinstance(rec, dict) and rec.get("file") == engine.path.name and rec.get("graph") == engine.graph:
            value = rec.get("sm_count")
            return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def sm_count_problems(bundle: Bundle, engine: EngineRecord, sm_count: int | None) -> list[str]:
    """Why `engine` does not fit a GPU with `sm_count` SMs (nothing to check when
    the caller does not know the SM count)."""
    if sm_count is None:
        return []
    recorded = recorded_sm_count(bundle, engine)
    if recorded is None:
        return [f"{engine.path.name} was recorded without the GPU's SM count (built by an older csk_ros; Jetson "
                f"Orin modules share a name), this GPU has {sm_count} SMs; rebuild it here"]
    if recorded != int(sm_count):
        return [f"{engine.path.name} was built for a {engine.gpu_name} with {recorded} SMs, this one has "
                f"{sm_count}; rebuild it here"]
    return []


def select_engine(bundle: Bundle, graph: str, trt_version: str, gpu_name: str, compute_capability: str,
                  precision: str | None = None, sm_count: int | None = None) -> tuple[EngineRecord | None, list[str]]:
    """The engine record of `graph` that can run here (the most recently recorded
    one, restricted to `precision` when given), or None and the reasons why none can.
    With `sm_count`, the record must carry the same SM count."""
    problems, usable = [], None
    candidates = [e for e in bundle.engines_for(graph) if precision in (None, e.precision)]
    if not candidates:
        wanted = f"{precision} " if precision else ""
        problems.append(f"the bundle has no {wanted}TensorRT engine for graph '{graph}'; build one with "
                        f"`python -m engines.build --bundle {bundle.root} --graphs {graph}`")
    for engine in candidates:
        found = engine_problems(engine, bundle, trt_version, gpu_name, compute_capability)
        found += sm_count_problems(bundle, engine, sm_count)
        if found:
            problems.extend(found)
        else:
            usable = engine  # later records are newer: keep the last usable one
    return usable, ([] if usable else problems)


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


def uint8_intermediate_problems(onnx_path) -> list[str] | None:
    """TensorRT pre-flight without TensorRT: nodes that produce a uint8 tensor which
    is not a graph output (the ONNX parser rejects those), and Casts to uint8 from
    anything but float / half (TensorRT 10.3's ICastLayer converts to UINT8 only
    from FLOAT or HALF: an int64 ArgMax must go through float). None when the
    `onnx` package is not installed (check skipped)."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(onnx_path), load_external_data=False)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; Cast targets and I/O types still tell most
        pass
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    for node in graph.node:
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to is not None and node.output:
                types[node.output[0]] = to
    outputs = {o.name for o in graph.output}
    problems = []
    castable = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        source = types.get(node.input[0]) if node.input else None
        if to == onnx.TensorProto.UINT8 and source is not None and source not in castable:
            problems.append(f"{Path(onnx_path).name}: node '{node.name or node.op_type}' casts "
                            f"{onnx.TensorProto.DataType.Name(source)} tensor '{node.input[0]}' to uint8; TensorRT "
                            "10.3 casts to UINT8 only from FLOAT or HALF, so cast through float (e.g. "
                            "`mask.float().to(torch.uint8)` in engines/graphs.py) and re-export")
        for tensor in node.output:
            if tensor and tensor not in outputs and types.get(tensor) == onnx.TensorProto.UINT8:
                problems.append(f"{Path(onnx_path).name}: node '{node.name or node.op_type}' ({node.op_type}) "
                                f"produces uint8 tensor '{tensor}' that is not a graph output; TensorRT accepts "
                                "UINT8 only as network input/output, so Cast uint8 inputs to float before any "
                                "other op (e.g. `.float()` before permute/unsqueeze in engines/graphs.py) and "
                                "re-export")
    return problems


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


def build_engine_bytes(onnx_path, precision: str, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                       calibrator=None, log=print, quantized: bool = False) -> bytes:
    """Parse the ONNX graph and build a serialized engine (the bytes of a .engine file).

    precision int8: `quantized=True` means `onnx_path` is a Q/DQ graph (explicit
    quantization, no calibrator): TensorRT 10 gets the INT8 + FP16 flags (weak
    typing: Q/DQ regions run in INT8, everything else may run in FP16); a
    TensorRT without precision flags (11) gets a strongly typed network instead.
    Otherwise `calibrator` (make_entropy_calibrator) is required: the TensorRT-10-
    only fallback for bundles without Q/DQ graphs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibrator is None and not quantized:
        raise ValueError("INT8 needs the bundle's Q/DQ graph (python -m engines.quantize) or, on TensorRT 10 only, "
                         "a calibrator on real EO/IR images: see make_entropy_calibrator")
    trt = import_tensorrt()
    weak_flags = {"fp16": ("FP16",), "int8": ("FP16", "INT8")}.get(precision, ())
    missing = [f for f in weak_flags if not hasattr(trt.BuilderFlag, f)]
    strongly_typed = precision == "int8" and quantized and bool(missing)
    if strongly_typed:
        flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
        if flag is None:
            raise EngineBuildError(f"TensorRT {trt.__version__} has neither INT8/FP16 builder flags nor strongly "
                                   "typed networks; use TensorRT 10 or later")
        network_flags, flags = 1 << int(flag), ()
    elif missing or (precision == "int8" and not quantized and not hasattr(trt, "IInt8EntropyCalibrator2")):
        raise EngineBuildError(f"TensorRT {trt.__version__} has no {'/'.join(missing) or 'calibrator'} builder "
                               "precision flag (TensorRT 11 removed weak typing and calibrator INT8): build fp32 "
                               "here, INT8 from the bundle's Q/DQ graph (python -m engines.quantize), or use "
                               "TensorRT 10 (JetPack 6) for fp16 engines")
    else:
        network_flags, flags = 0, weak_flags  # TensorRT 10: explicit batch always; no flag needed
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [format_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path}:\n  " +
                               "\n  ".join(errors or ["(no parser error recorded)"]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if precision == "int8" and not quantized:
        if log:
            log(f"{Path(onnx_path).name}: INT8 by calibration (implicit quantization) is the TensorRT-10-only "
                "fallback for bundles without a Q/DQ graph; `python -m engines.quantize` adds one")
        config.int8_calibrator = calibrator  # deprecated since 10.1, removed in 11
    elif strongly_typed and log:
        log(f"{Path(onnx_path).name}: strongly typed build (TensorRT {trt.__version__} has no precision flags): "
            "Q/DQ regions run in INT8, the rest in the graph's float type")
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if precision == "int8" and not quantized and hasattr(calibrator, "verify"):
        calibrator.verify()  # fewer batches than given, or an exception inside get_batch: fail loudly
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {onnx_path} ({precision}); its log "
                               "above says why (unsupported layer, too little workspace, ...)")
    if log:
        how = " from Q/DQ scales" if quantized and precision == "int8" else ""
        log(f"built {Path(onnx_path).name} ({precision}{how}) in {time.monotonic() - started:.0f} s")
    return bytes(serialized)


def inspect_engine_bytes(data: bytes) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """Deserialize an engine and return its I/O tensors: name -> (mode, shape, dtype)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.ERROR)
    engine = trt.Runtime(logger).deserialize_cuda_engine(data)
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
    record = dict(graph=graph, file=file_name, precision=precision, onnx_sha256=onnx_sha256, sha256=engine_sha256,
                  tensorrt_version=str(tensorrt_version), gpu_name=gpu_name,
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
           "import_cudart", "cuda_check", "gpu_slug", "engine_file_name", "calibration_cache_path", "trtexec_command",
           "expected_io", "io_problems", "explicit_int8", "qdq_problems", "source_graph", "recorded_sm_count",
           "sm_count_problems", "select_engine", "rebuild_precision", "uint8_intermediate_problems",
           "format_parser_error",
           "build_engine_bytes", "inspect_engine_bytes", "engine_io", "record_engine", "build_and_record"]
