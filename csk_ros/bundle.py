"""Model bundle: the contract between engines/ (writer) and csk_ros (reader).

A bundle is a directory with `manifest.json`, `fused.onnx`, `ir_only.onnx`
(optionally `eo_only.onnx`), optional INT8 QDQ versions of them (manifest key
"quantized", written by `python -m engines.quantize`: explicitly quantised
graphs that ONNX Runtime runs with INT8 kernels and TensorRT builds INT8
engines from without a calibrator) and optional TensorRT `*.engine` files. This
module reads and validates it without importing any inference library, so a
bad bundle fails at start-up with a message that says what to fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from csk_ros.imaging.thermal import ThermalScaling

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
GRAPH_INPUTS = {"fused": ("eo", "ir"), "ir_only": ("ir",), "eo_only": ("eo",)}
GRAPH_OUTPUTS = ("mask", "confidence")
REQUIRED_GRAPHS = ("ir_only",)  # IR-only is the fallback the node always needs
PRECISIONS = ("fp32", "fp16", "int8")


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and the fix."""


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers never
    see half a file and a failure leaves nothing behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_manifest(bundle_dir: str | Path, manifest: dict) -> None:
    atomic_write_bytes(Path(bundle_dir) / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


@dataclass(frozen=True)
class GraphRecord:
    name: str
    path: Path
    sha256: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class EngineRecord:
    graph: str
    path: Path
    precision: str
    onnx_sha256: str
    sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str


@dataclass
class Bundle:
    root: Path
    manifest: dict
    height: int
    width: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    graphs: dict[str, GraphRecord]
    engines: list[EngineRecord] = field(default_factory=list)
    quantized: dict[str, GraphRecord] = field(default_factory=dict)  # INT8 QDQ graphs, by graph name

    @property
    def thermal_scaling(self) -> dict:
        return dict(self.manifest.get("thermal_scaling") or {})

    def engines_for(self, graph: str) -> list[EngineRecord]:
        return [e for e in self.engines if e.graph == graph]

    def source_graph(self, graph: str, precision: str) -> GraphRecord:
        """The ONNX file an engine or session of `precision` is built from: the
        INT8 QDQ graph when precision is "int8" and the bundle has one, else
        the fp32 graph (TensorRT's fp16 and its implicit INT8 calibration
        start from the float graph)."""
        if precision == "int8" and graph in self.quantized:
            return self.quantized[graph]
        if graph not in self.graphs:
            raise BundleError(f"{self.root / MANIFEST}: the bundle has no '{graph}' graph")
        return self.graphs[graph]


def _need(mapping: dict, key: str, kind, where: str):
    if not isinstance(mapping, dict):
        raise BundleError(f"{where}: must be a JSON object, got {type(mapping).__name__}")
    if key not in mapping:
        raise BundleError(f"{where}: missing '{key}'")
    value = mapping[key]
    if not isinstance(value, kind):
        raise BundleError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def _inside(root: Path, name: str, where: str) -> Path:
    """Resolve a file named by the manifest; it must stay inside the bundle."""
    if not isinstance(name, str) or not name or os.path.isabs(name):
        raise BundleError(f"{where}: file name must be a relative path inside the bundle, got {name!r}")
    path = (root / name).resolve()
    if root not in path.parents:
        raise BundleError(f"{where}: file {name!r} points outside the bundle directory {root}")
    return path


def load_manifest(bundle_dir: str | Path, verify_hashes: bool = True) -> Bundle:
    """Parse and validate `manifest.json` and check every graph file's sha256."""
    root, manifest, where = _read_manifest(bundle_dir)
    class_names, palette = _classes(manifest, where)
    height, width = _input_size(manifest, where)
    graphs = _graphs(root, manifest, where, verify_hashes)
    quantized = _quantized(root, manifest, where, graphs, verify_hashes)
    try:  # checked here, before any backend is loaded, not on the first 16-bit frame
        ThermalScaling.from_dict(manifest.get("thermal_scaling"))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: bad thermal_scaling: {exc}") from exc
    engines = _engines(root, manifest, where, graphs)
    return Bundle(root, manifest, height, width, class_names, palette, graphs, engines, quantized)


def _read_manifest(bundle_dir: str | Path) -> tuple[Path, dict, str]:
    """(bundle root, the manifest as a dict, its path for messages): the folder, the file, JSON, the version."""
    root = Path(bundle_dir).expanduser().resolve()
    if not root.is_dir():
        raise BundleError(f"model bundle directory not found: {root} (export one with `python -m engines.export`)")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} not found: not a model bundle (export one with `python -m engines.export`)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from exc
    where = str(manifest_path)
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: must be a JSON object")
    version = _need(manifest, "format_version", int, where)
    if version != FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version} is not supported (this csk_ros reads {FORMAT_VERSION}); "
                          "re-export the bundle with this version's engines.export")
    return root, manifest, where


def _classes(manifest: dict, where: str) -> tuple[tuple, tuple]:
    """Class names and one RGB colour per class."""
    class_names = tuple(_need(manifest, "class_names", list, where))
    palette = tuple(tuple(c) if isinstance(c, list) else (c,) for c in _need(manifest, "palette", list, where))
    if not class_names or len(palette) != len(class_names) or any(
            len(c) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette):
        raise BundleError(f"{where}: needs one RGB triple (0..255) in 'palette' per class name")
    return class_names, palette


def _input_size(manifest: dict, where: str) -> tuple[int, int]:
    inp = _need(manifest, "input", dict, where)
    height, width = _need(inp, "height", int, f"{where} input"), _need(inp, "width", int, f"{where} input")
    if height <= 0 or width <= 0:
        raise BundleError(f"{where}: input size must be positive, got {height}x{width}")
    return height, width


def _graphs(root: Path, manifest: dict, where: str, verify_hashes: bool) -> dict:
    """The fp32 graphs; the IR-only one is required (it is the fallback)."""
    graphs = {}
    for name, rec in _need(manifest, "graphs", dict, where).items():
        graphs[name] = _graph_record(root, name, rec, f"{where} graphs.{name}", verify_hashes, "re-export the bundle")
    for name in REQUIRED_GRAPHS:
        if name not in graphs:
            raise BundleError(f"{where}: the bundle has no '{name}' graph, which the IR-only fallback needs")
    return graphs


def _quantized(root: Path, manifest: dict, where: str, graphs: dict, verify_hashes: bool) -> dict:
    """The INT8 Q/DQ graphs (optional: bundles from before engines.quantize have none), each made from
    the fp32 graph the bundle holds now."""
    quantized = {}
    quantized_records = _need(manifest, "quantized", dict, where) if "quantized" in manifest else {}
    for name, rec in quantized_records.items():
        qwhere = f"{where} quantized.{name}"
        if name not in graphs:
            raise BundleError(f"{qwhere}: INT8 graph for {name!r}, which the bundle has no fp32 graph of "
                              f"(graphs: {sorted(graphs)})")
        precision = _need(rec, "precision", str, qwhere)
        if precision != "int8":
            raise BundleError(f"{qwhere}: precision must be 'int8', got {precision!r}")
        quantized[name] = _graph_record(root, name, rec, qwhere, verify_hashes,
                                        "re-run `python -m engines.quantize` on the bundle")
        source = rec.get("source_sha256")  # optional: the fp32 graph the QDQ graph was made from
        if source is not None and source != graphs[name].sha256:
            raise BundleError(f"{qwhere}: {quantized[name].path.name} was quantised from a different "
                              f"{graphs[name].path.name} (re-exported since?); re-run `python -m engines.quantize` "
                              "on the bundle")
    return quantized


def _engines(root: Path, manifest: dict, where: str, graphs: dict) -> list:
    """The TensorRT engine records (whether one fits this machine: backends/engine_check.py)."""
    engines = []
    for i, rec in enumerate(manifest.get("engines") or []):
        ewhere = f"{where} engines[{i}]"
        engine = EngineRecord(
            graph=_need(rec, "graph", str, ewhere),
            path=_inside(root, _need(rec, "file", str, ewhere), ewhere),
            precision=_need(rec, "precision", str, ewhere),
            onnx_sha256=_need(rec, "onnx_sha256", str, ewhere),
            sha256=_need(rec, "sha256", str, ewhere),
            tensorrt_version=_need(rec, "tensorrt_version", str, ewhere),
            gpu_name=_need(rec, "gpu_name", str, ewhere),
            compute_capability=str(_need(rec, "compute_capability", (str, int, float), ewhere)),
        )
        if engine.graph not in graphs:
            raise BundleError(f"{ewhere}: engine for unknown graph {engine.graph!r}")
        if engine.precision not in PRECISIONS:
            raise BundleError(f"{ewhere}: precision must be one of {PRECISIONS}, got {engine.precision!r}")
        engines.append(engine)
    return engines


def _graph_record(root: Path, name: str, rec: dict, where: str, verify_hashes: bool, fix: str) -> GraphRecord:
    """One ONNX graph named by the manifest: inside the bundle, the I/O contract, present, hash matching."""
    if name not in GRAPH_INPUTS:
        raise BundleError(f"{where}: unknown graph (expected one of {sorted(GRAPH_INPUTS)})")
    path = _inside(root, _need(rec, "file", str, where), where)
    record = GraphRecord(name, path, _need(rec, "sha256", str, where), tuple(_need(rec, "inputs", list, where)),
                         tuple(_need(rec, "outputs", list, where)))
    if record.inputs != GRAPH_INPUTS[name] or record.outputs != GRAPH_OUTPUTS:
        raise BundleError(f"{where}: I/O {record.inputs} -> {record.outputs} differs from the contract "
                          f"{GRAPH_INPUTS[name]} -> {GRAPH_OUTPUTS}")
    if not path.is_file():
        raise BundleError(f"{where}: graph file missing: {path}")
    if verify_hashes and sha256_of(path) != record.sha256:
        raise BundleError(f"{where}: sha256 of {path.name} does not match the manifest (file changed or "
                          f"corrupt); {fix}")
    return record
