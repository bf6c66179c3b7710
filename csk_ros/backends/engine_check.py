"""Every rule that says whether a graph or an engine can run here: one home for the runtime and the tools.

The I/O contract of a graph at the bundle's size (`expected_io`), checked against ONNX Runtime sessions
(`onnxruntime_io_problems`) and TensorRT engines (`io_problems`); whether a TensorRT engine record fits
this machine (`engine_problems`: source graph hash, TensorRT version, GPU, file hash;
`sm_count_problems`) and which one to use (`select_engine`); whether Q/DQ graphs can become TensorRT
engines (`qdq_problems`, `onnxruntime_flavour_problem`) or run at all (`int8_graph_problem`);
TensorRT's UINT8 rules for any ONNX graph (`uint8_intermediate_problems`: the build's pre-flight and
engines.quantize's check of what it writes). Callers import them from here; nothing here imports TensorRT.
"""

from __future__ import annotations

from pathlib import Path

from csk_ros.bundle import GRAPH_OUTPUTS, Bundle, EngineRecord, sha256_of

ENGINE_DTYPE = "uint8"  # every I/O tensor of our graphs (contract 3)
ORT_DTYPE = "tensor(uint8)"


def engine_problems(engine: EngineRecord, bundle: Bundle, tensorrt_version: str, gpu_name: str,
                    compute_capability: str, check_file_hash: bool = True) -> list[str]:
    """Why `engine` cannot run here (empty list: it can). TensorRT engines are
    tied to the TensorRT version and GPU they were built with, and to the
    ONNX graph they came from."""
    problems = []
    graph = bundle.source_graph(engine.graph, engine.precision)  # an int8 engine comes from the QDQ graph
    if engine.onnx_sha256 != graph.sha256:
        problems.append(f"{engine.path.name} was built from a different {graph.path.name} (ONNX hash changed); "
                        "rebuild it with `python -m engines.build`")
    if engine.tensorrt_version != tensorrt_version:
        problems.append(f"{engine.path.name} was built with TensorRT {engine.tensorrt_version}, this machine runs "
                        f"{tensorrt_version}; rebuild it here")
    if engine.compute_capability != str(compute_capability) or engine.gpu_name != gpu_name:
        problems.append(f"{engine.path.name} was built for {engine.gpu_name} (sm {engine.compute_capability}), this "
                        f"GPU is {gpu_name} (sm {compute_capability}); rebuild it here")
    if not engine.path.is_file():
        problems.append(f"engine file missing: {engine.path}")
    elif check_file_hash and sha256_of(engine.path) != engine.sha256:
        problems.append(f"{engine.path.name} does not match its recorded sha256 (truncated or corrupt); rebuild it")
    return problems


def explicit_int8(bundle: Bundle, graph: str, precision: str) -> bool:
    """True when an engine of `graph` at `precision` is built from the bundle's
    Q/DQ graph (explicit quantization, no calibrator)."""
    return precision == "int8" and graph in (getattr(bundle, "quantized", None) or {})


def onnxruntime_flavour_problem(bundle: Bundle, graphs) -> str | None:
    """One line naming every Q/DQ graph of `graphs` that is engines.quantize's ONNX Runtime flavour
    (None: there is none). engines.quantize records `tensorrt_compatible`: its default flavour has
    asymmetric uint8 activations, which TensorRT takes neither as intermediate tensors nor in explicit
    quantization (symmetric int8 only, zero point 0); one fix covers them all, so one line says it."""
    quantized = bundle.manifest.get("quantized") or {}
    files = [(quantized.get(g) or {}).get("file", f"{g}.int8.onnx") for g in graphs
             if explicit_int8(bundle, g, "int8") and (quantized.get(g) or {}).get("tensorrt_compatible") is False]
    if not files:
        return None
    return (f"{', '.join(files)} {'is' if len(files) == 1 else 'are'} the ONNX Runtime flavour of engines.quantize "
            "(asymmetric uint8 activations); TensorRT INT8 takes symmetric int8 only: re-run `python -m "
            f"engines.quantize --bundle {bundle.root} --activations int8-symmetric`, or build fp16")


def qdq_problems(bundle: Bundle, graph: str) -> list[str]:
    """Why the bundle's Q/DQ graph of `graph` cannot become a TensorRT engine (see
    onnxruntime_flavour_problem)."""
    problem = onnxruntime_flavour_problem(bundle, (graph,))
    return [problem] if problem else []


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


def onnxruntime_io_problems(session, record, bundle: Bundle) -> list[str]:
    """Why an ONNX Runtime session of `record` breaks the contract (names, order, uint8, the bundle's size)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = tuple(o.name for o in session.get_outputs())
    if tuple(inputs) != record.inputs or outputs != record.outputs:
        return [f"{record.path.name}: graph I/O {tuple(inputs)} -> {outputs} differs from the "
                f"manifest {record.inputs} -> {record.outputs}"]
    expected = expected_io(bundle, record.name)
    problems = []
    for name, arg in inputs.items():
        shape = list(expected[name][1])
        if list(arg.shape) != shape or arg.type != ORT_DTYPE:
            problems.append(f"{record.path.name}: input '{name}' is {arg.type} {arg.shape}, the manifest says "
                            f"uint8 {shape}")
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


UINT8_CAST_SOURCES = ("FLOAT", "FLOAT16")  # TensorRT 10.3 / 10.16 ICastLayer: to UINT8 only from these


def _onnx_model(graph):
    """(model with inferred types, file name for messages) from a path or an onnx.ModelProto."""
    import onnx

    model = graph if isinstance(graph, onnx.ModelProto) else onnx.load(str(graph), load_external_data=False)
    name = Path(graph).name if not isinstance(graph, onnx.ModelProto) else (model.graph.name or "graph")
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; Cast targets and I/O types still tell most
        pass
    return model, name


def _tensor_types(model) -> dict[str, int]:
    """ONNX element type of every tensor whose type is known: graph I/O, inferred values, Cast outputs."""
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Cast" and node.output:
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to is not None:
                types[node.output[0]] = to
    return types


def _bad_uint8_casts(model, name: str, types: dict[str, int]) -> list[str]:
    """Casts to UINT8 from anything but FLOAT / FLOAT16 (TensorRT's ICastLayer refuses them)."""
    import onnx

    castable = {getattr(onnx.TensorProto, t) for t in UINT8_CAST_SOURCES}
    quantized = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    fix = ("engines.quantize must keep the float cast after its pre-processing: re-run `python -m "
           "engines.quantize` with this version" if quantized else
           "cast through float (e.g. `mask.float().to(torch.uint8)` in engines/graphs.py) and re-export")
    problems = []
    for node in model.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        source = types.get(node.input[0]) if node.input else None
        if to == onnx.TensorProto.UINT8 and source is not None and source not in castable:
            problems.append(f"{name}: node '{node.name or node.op_type}' casts "
                            f"{onnx.TensorProto.DataType.Name(source)} tensor '{node.input[0]}' to uint8; TensorRT "
                            f"10.3 casts to UINT8 only from FLOAT or HALF, so {fix}")
    return problems


def _uint8_intermediates(model, name: str, types: dict[str, int]) -> list[str]:
    """uint8 tensors that are not graph outputs. QuantizeLinear ones (asymmetric uint8 activations, the
    ONNX Runtime flavour of engines.quantize) are summed up in one line: one fix covers them all."""
    import onnx

    outputs = {o.name for o in model.graph.output}
    problems, quantizers = [], []
    for node in model.graph.node:
        for tensor in node.output:
            if not tensor or tensor in outputs or types.get(tensor) != onnx.TensorProto.UINT8:
                continue
            if node.op_type == "QuantizeLinear":
                quantizers.append(node.name or tensor)
                continue
            problems.append(f"{name}: node '{node.name or node.op_type}' ({node.op_type}) produces uint8 tensor "
                            f"'{tensor}' that is not a graph output; TensorRT accepts UINT8 only as network "
                            "input/output, so Cast uint8 inputs to float before any other op (e.g. `.float()` "
                            "before permute/unsqueeze in engines/graphs.py) and re-export")
    if quantizers:
        problems.insert(0, f"{name}: {len(quantizers)} QuantizeLinear nodes produce uint8 activations (the ONNX "
                           "Runtime flavour of engines.quantize); TensorRT takes UINT8 only as network input/output "
                           "and symmetric int8 Q/DQ only: re-run `python -m engines.quantize --activations "
                           "int8-symmetric`")
    return problems


def uint8_intermediate_problems(graph, casts_only: bool = False) -> list[str] | None:
    """TensorRT's two UINT8 rules, checked without TensorRT: UINT8 only as a network input or output
    (onnx-tensorrt: "UINT8 is only supported as network input or output tensor types"; its parser
    rejects a node with a uint8 output that is not a graph output), and a Cast to UINT8 only from
    FLOAT or HALF (TensorRT 10.3 and 10.16 ICastLayer: an int64 ArgMax must go through float).

    The ONE check for these rules: engines.build's pre-flight, engines.quantize (every graph it writes)
    and the tests call it. `graph`: an ONNX path or an onnx.ModelProto. `casts_only`: the cast rule
    alone, for graphs whose uint8 activations are intended and which never go to TensorRT (the ONNX
    Runtime flavour of engines.quantize). Returns one line per problem, or None when the `onnx`
    package is not installed (check skipped)."""
    try:
        model, name = _onnx_model(graph)
    except ImportError:
        return None
    types = _tensor_types(model)
    problems = _bad_uint8_casts(model, name, types)
    return problems if casts_only else _uint8_intermediates(model, name, types) + problems


def int8_graph_problem(bundle: Bundle, graphs) -> str | None:
    """Why the bundle cannot run in int8 under ONNX Runtime (None: it can)."""
    missing = [g for g in graphs if g not in bundle.quantized]
    if not missing:
        return None
    return (f"precision 'int8' needs the bundle's INT8 QDQ graphs, but {bundle.root} has none for "
            f"{', '.join(missing)}; create them with `python -m engines.quantize --bundle {bundle.root}` "
            "or run with precision 'fp32'")
