"""Build TensorRT engines for a model bundle and record them in its manifest.

    python -m engines.build --bundle engines/NAME [--graphs fused,ir_only]
        [--precision fp32|fp16|int8] [--calib-images DIR] [--calib-cache FILE]
        [--workspace-mb N]

Run it ON the target machine (the Jetson): an engine only runs with the
TensorRT version and GPU model it was built with, and the manifest records
both (plus the ONNX sha256 it came from) so the node can refuse or rebuild a
stale engine instead of crashing.

Engines are built from the bundle's ONNX graphs with TensorRT's ONNX parser
(the graphs whose parity with torch the export checked); the equivalent
`trtexec` line is printed for each graph.

INT8: from the bundle's Q/DQ graph when it has one (`python -m
engines.quantize`; explicit quantization, no calibrator, TensorRT 10 and
11). Without one, the TensorRT-10-only FALLBACK calibrates the float graph on
real EO/IR images (--calib-images) with TensorRT's entropy calibrator; the
cache (default: in the bundle, named after the ONNX hash) makes later builds
skip calibration.

The former `--via torch-tensorrt` route is gone (docs/jetson.md says why): it
compiled the checkpoint rather than the bundle's verified ONNX, released
Torch-TensorRT names the outputs output0/output1 (the runtime binds mask /
confidence by name) and 2.13 removed `enabled_precisions`, so its "fp16"
engines were built in fp32. `--via tensorrt` is still accepted.

Exit codes: 0 built, 1 bad bundle / arguments / failed build, 2 a required
package (tensorrt, cuda-python) is missing. An engine file appears only
complete (atomic write) and only after its I/O was checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from csk_ros.backends.engine_check import explicit_int8, onnxruntime_flavour_problem, uint8_intermediate_problems
from csk_ros.backends.trt_build import (
    DEFAULT_CALIB_IMAGES,
    DEFAULT_WORKSPACE_MB,
    INSTALL_HINT,
    EngineBuildError,
    build_and_record,
    build_engine_bytes,
    calibration_cache_path,
    engine_file_name,
    inspect_engine_bytes,
    source_graph,
    tensorrt_build_plan,
    trtexec_command,
)
from csk_ros.bundle import PRECISIONS, BundleError, load_manifest
from engines.trt_calibration import calibration_sources, make_entropy_calibrator

VIAS = ("tensorrt", "torch-tensorrt")
TORCH_TRT_REMOVED = ("--via torch-tensorrt was removed: it compiled the checkpoint instead of the bundle's verified "
                     "ONNX, released Torch-TensorRT names the outputs output0/output1 (the runtime binds 'mask' and "
                     "'confidence' by name) and 2.13 removed enabled_precisions (its 'fp16' engines were fp32). "
                     "Build from the bundle's ONNX: python -m engines.build --bundle DIR --precision fp16|int8")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m engines.build", description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="model bundle directory (from python -m engines.export)")
    p.add_argument("--graphs", default=None,
                   help="comma-separated graphs to build (default: fused and ir_only, those the bundle has)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="engine precision (default fp16; int8 uses the bundle's Q/DQ graphs, else needs "
                        "--calib-images or existing caches: TensorRT 10 only)")
    p.add_argument("--via", choices=VIAS, default="tensorrt",
                   help="tensorrt (the only route): build from the bundle's ONNX; torch-tensorrt was removed")
    p.add_argument("--calib-images", default=None, help="folder of real EO/IR images for INT8 calibration")
    p.add_argument("--calib-cache", default=None,
                   help="INT8 calibration cache file; '{graph}' in it is replaced by the graph name "
                        "(default: <bundle>/<graph>.<onnx sha>.int8.calib)")
    p.add_argument("--calib-max-images", type=int, default=DEFAULT_CALIB_IMAGES,
                   help=f"at most this many calibration samples per graph (default {DEFAULT_CALIB_IMAGES})")
    p.add_argument("--workspace-mb", type=int, default=DEFAULT_WORKSPACE_MB,
                   help="TensorRT builder workspace limit in MiB")
    p.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)  # only the removed torch-tensorrt route
    return p.parse_args(argv)


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _graphs(args, bundle) -> list[str]:
    if args.graphs:
        graphs = [g.strip() for g in args.graphs.split(",") if g.strip()]
    else:
        graphs = [g for g in ("fused", "ir_only") if g in bundle.graphs]
    unknown = [g for g in graphs if g not in bundle.graphs]
    if unknown or not graphs:
        raise BundleError(f"graphs {unknown or graphs} are not in the bundle (it has {sorted(bundle.graphs)})")
    return graphs


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        bundle = load_manifest(args.bundle)
        graphs = _graphs(args, bundle)
    except BundleError as exc:
        return _fail(str(exc))
    if args.workspace_mb <= 0:
        return _fail("--workspace-mb must be positive")
    if args.via == "torch-tensorrt" or args.checkpoint:
        return _fail(TORCH_TRT_REMOVED)
    caches = {g: calibration_cache_path(bundle, g, args.calib_cache, shared=len(graphs) > 1) for g in graphs}
    ort_flavour = onnxruntime_flavour_problem(bundle, graphs) if args.precision == "int8" else None
    if ort_flavour:
        return _fail(ort_flavour)
    calibrated = [g for g in graphs if args.precision == "int8" and not explicit_int8(bundle, g, args.precision)]
    if calibrated:  # no Q/DQ graph: the TensorRT-10-only calibrator fallback
        print(f"note: {', '.join(calibrated)} has no Q/DQ graph in the bundle; INT8 falls back to calibration "
              "(TensorRT 10 only; `python -m engines.quantize` adds Q/DQ graphs)", file=sys.stderr)
        if not args.calib_images and not all(caches[g].is_file() for g in calibrated):
            return _fail("INT8 without the bundle's Q/DQ graphs needs calibration on real EO/IR images: pass "
                         "--calib-images DIR (or --calib-cache pointing at existing calibration caches), or add "
                         "Q/DQ graphs with `python -m engines.quantize`")
        if args.calib_images:
            try:
                for g in calibrated:
                    if not caches[g].is_file():
                        calibration_sources(args.calib_images, bundle.graphs[g].inputs, args.calib_max_images)
            except ValueError as exc:
                return _fail(str(exc))
    sources = {g: source_graph(bundle, g, args.precision) for g in graphs}
    problems = [p for g in graphs for p in (uint8_intermediate_problems(sources[g].path) or [])]
    if problems:  # TensorRT-specific ONNX pre-flight, no TensorRT needed
        return _fail("these graphs cannot be parsed by TensorRT:\n  " + "\n  ".join(problems))

    def calib(g):
        return caches[g] if g in calibrated else None

    try:  # everything below needs TensorRT + cuda-python
        from csk_ros.backends.tensorrt_backend import tensorrt_runtime_info
    except ImportError as exc:
        for g in graphs:
            print(f"# {g}: equivalent trtexec command (TensorRT's trtexec, e.g. /usr/src/tensorrt/bin on Jetson;"
                  " an engine built that way is not recorded in the manifest):")
            print(trtexec_command(sources[g].path, bundle.root / f"{g}.{args.precision}.engine",
                                  args.precision, args.workspace_mb, calib(g)))
        message = f"cannot build engines here: {exc}" + ("" if INSTALL_HINT in str(exc) else f"\n{INSTALL_HINT}")
        return _fail(message, code=2)
    try:
        runtime_info = tensorrt_runtime_info()
    except BundleError as exc:
        return _fail(str(exc))
    print(f"TensorRT {runtime_info[0]} on {runtime_info[1]} (sm {runtime_info[2]}, {runtime_info[3]} SMs)")
    for g in graphs:
        engine_path = bundle.root / engine_file_name(g, args.precision, *runtime_info[:2], runtime_info[3])
        try:
            strongly_typed = tensorrt_build_plan(args.precision, explicit_int8(bundle, g, args.precision))[0]
            print(f"# {g}: equivalent trtexec command:")
            print(trtexec_command(sources[g].path, engine_path, args.precision, args.workspace_mb, calib(g),
                                  strongly_typed=strongly_typed))
            built = build_and_record(bundle, g, args.precision, runtime_info,
                                     _builder(args, bundle, g, caches[g], g in calibrated),
                                     inspect_fn=inspect_engine_bytes, workspace_mb=args.workspace_mb, via="tensorrt",
                                     **({"calibration_cache": caches[g].name} if g in calibrated else {}))
        except (EngineBuildError, BundleError, ValueError, RuntimeError) as exc:
            return _fail(f"building the {g} engine failed: {exc}")
        print(f"{g}: {built.path.name} [{built.precision}, from {sources[g].path.name}, TensorRT "
              f"{built.tensorrt_version}, {built.gpu_name}]")
    return 0


def _builder(args, bundle, graph: str, cache_path: Path, calibrate: bool):
    def build(record):
        calibrator = None
        if calibrate:
            calibrator = make_entropy_calibrator(args.calib_images, bundle, graph, cache_path, args.calib_max_images)
        try:
            return build_engine_bytes(record.path, args.precision, args.workspace_mb, calibrator,
                                      quantized=explicit_int8(bundle, graph, args.precision))
        finally:
            if calibrator is not None:
                calibrator.free()

    return build


if __name__ == "__main__":
    sys.exit(main())
