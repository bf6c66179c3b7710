"""Build TensorRT engines for a model bundle and record them in its manifest.

    python -m engines.build --bundle engines/NAME [--graphs fused,ir_only]
        [--precision fp32|fp16|int8] [--via tensorrt|torch-tensorrt]
        [--calib-images DIR] [--calib-cache FILE] [--workspace-mb N]
        [--checkpoint CKPT]

Run it ON the target machine (the Jetson): an engine only runs with the
TensorRT version and GPU model it was built with, and the manifest records
both (plus the ONNX sha256 it came from) so the node can refuse or rebuild a
stale engine instead of crashing.

--via tensorrt (default): parse the bundle's ONNX graph with TensorRT's ONNX
parser and build; the equivalent `trtexec` line is printed for each graph.
--via torch-tensorrt: compile the checkpoint's model (inside the same
engines.graphs.DeployGraph wrapper the ONNX export uses) with Torch-TensorRT
straight to serialized engine bytes, which the same runtime loads.

INT8 (--via tensorrt only) calibrates on real EO/IR images (--calib-images)
with TensorRT's entropy calibrator; the cache (default: in the bundle, named
after the ONNX hash) makes later builds skip calibration. TensorRT deprecates
calibrator-based INT8 since 10.1 in favour of explicit Q/DQ quantization.

Exit codes: 0 built, 1 bad bundle / arguments / failed build, 2 a required
package (tensorrt, cuda-python, torch-tensorrt) is missing. An engine file
appears only complete (atomic write) and only after its I/O was checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from csk_ros.bundle import GRAPH_INPUTS, PRECISIONS, BundleError, load_manifest, sha256_of
from csk_ros.trt_build import (DEFAULT_CALIB_IMAGES, DEFAULT_WORKSPACE_MB, INSTALL_HINT, TORCH_TRT_INSTALL_HINT,
                               EngineBuildError, build_and_record, build_engine_bytes, calibration_cache_path,
                               calibration_sources, engine_file_name, inspect_engine_bytes, make_entropy_calibrator,
                               trtexec_command, uint8_intermediate_problems)

VIAS = ("tensorrt", "torch-tensorrt")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m engines.build", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="model bundle directory (from python -m engines.export)")
    p.add_argument("--graphs", default=None,
                   help="comma-separated graphs to build (default: fused and ir_only, those the bundle has)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="engine precision (default fp16; int8 needs --calib-images or existing caches)")
    p.add_argument("--via", choices=VIAS, default="tensorrt",
                   help="tensorrt: build from the bundle's ONNX; torch-tensorrt: compile the --checkpoint")
    p.add_argument("--calib-images", default=None, help="folder of real EO/IR images for INT8 calibration")
    p.add_argument("--calib-cache", default=None,
                   help="INT8 calibration cache file; '{graph}' in it is replaced by the graph name "
                        "(default: <bundle>/<graph>.<onnx sha>.int8.calib)")
    p.add_argument("--calib-max-images", type=int, default=DEFAULT_CALIB_IMAGES,
                   help=f"at most this many calibration samples per graph (default {DEFAULT_CALIB_IMAGES})")
    p.add_argument("--workspace-mb", type=int, default=DEFAULT_WORKSPACE_MB,
                   help="TensorRT builder workspace limit in MiB")
    p.add_argument("--checkpoint", default=None, help="training checkpoint (required with --via torch-tensorrt)")
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


class _NamedIO:
    """Factory for modules whose forward() argument names are the graph's input
    names, so Torch-TensorRT names the engine's input bindings eo / ir."""

    @staticmethod
    def wrap(deploy, graph: str):
        from torch import nn

        class Fused(nn.Module):
            def __init__(self):
                super().__init__()
                self.deploy = deploy

            def forward(self, eo, ir):
                return self.deploy(eo, ir)

        class Single(nn.Module):
            def __init__(self):
                super().__init__()
                self.deploy = deploy

            def forward(self, ir):
                return self.deploy(ir)

        class SingleEO(Single):
            def forward(self, eo):
                return self.deploy(eo)

        return {"fused": Fused, "ir_only": Single, "eo_only": SingleEO}[graph]()


def torch_tensorrt_engine(checkpoint, bundle, graph: str, precision: str, workspace_mb: int) -> bytes:
    """Serialized TensorRT engine bytes from the checkpoint via Torch-TensorRT's dynamo path."""
    import torch
    import torch_tensorrt

    from engines.graphs import DeployGraph
    from training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    module = _NamedIO.wrap(DeployGraph(model, graph), graph).eval().cuda()
    shapes = {"eo": (1, bundle.height, bundle.width, 3), "ir": (1, bundle.height, bundle.width)}
    example = tuple(torch.zeros(shapes[name], dtype=torch.uint8, device="cuda") for name in GRAPH_INPUTS[graph])
    exported = torch.export.export(module, example)
    precisions = {torch.float32, torch.float16} if precision == "fp16" else {torch.float32}
    kwargs = dict(arg_inputs=list(example), enabled_precisions=precisions, workspace_size=int(workspace_mb) << 20)
    convert = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine
    try:  # newer Torch-TensorRT names the bindings; older ones use the forward() names and output0, output1
        data = convert(exported, **kwargs, arg_input_binding_names=list(GRAPH_INPUTS[graph]),
                       output_binding_names=["mask", "confidence"])
    except TypeError:
        data = convert(exported, **kwargs)
    return bytes(data)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        bundle = load_manifest(args.bundle)
        graphs = _graphs(args, bundle)
    except BundleError as exc:
        return _fail(str(exc))
    if args.workspace_mb <= 0:
        return _fail("--workspace-mb must be positive")
    if args.via == "torch-tensorrt":
        if not args.checkpoint:
            return _fail("--via torch-tensorrt compiles from the training checkpoint: pass --checkpoint CKPT")
        if args.precision == "int8":
            return _fail("INT8 via torch-tensorrt needs explicit (Q/DQ) quantization, which this tool does not "
                         "do; use --via tensorrt --precision int8 --calib-images DIR")
        checkpoint = Path(args.checkpoint).expanduser()
        if not checkpoint.is_file():
            return _fail(f"checkpoint not found: {checkpoint}")
        mismatch = _checkpoint_mismatch(bundle, checkpoint)
        if mismatch:
            return _fail(mismatch)
    caches = {g: calibration_cache_path(bundle, g, args.calib_cache, shared=len(graphs) > 1) for g in graphs}
    if args.precision == "int8":
        if not args.calib_images and not all(p.is_file() for p in caches.values()):
            return _fail("INT8 needs calibration on real EO/IR images: pass --calib-images DIR (or --calib-cache "
                         "pointing at existing calibration caches)")
        if args.calib_images:
            try:
                for g in graphs:
                    if not caches[g].is_file():
                        calibration_sources(args.calib_images, bundle.graphs[g].inputs, args.calib_max_images)
            except ValueError as exc:
                return _fail(str(exc))
    if args.via == "tensorrt":  # TensorRT-specific ONNX pre-flight, no TensorRT needed
        problems = [p for g in graphs for p in (uint8_intermediate_problems(bundle.graphs[g].path) or [])]
        if problems:
            return _fail("these graphs cannot be parsed by TensorRT:\n  " + "\n  ".join(problems))

    try:  # everything below needs TensorRT (+ cuda-python, + torch-tensorrt for that route)
        from csk_ros.backends.tensorrt_backend import tensorrt_runtime_info
        if args.via == "torch-tensorrt":
            import torch_tensorrt  # noqa: F401
    except ImportError as exc:
        for g in graphs:
            print(f"# {g}: equivalent trtexec command (TensorRT's trtexec, e.g. /usr/src/tensorrt/bin on Jetson;"
                  " an engine built that way is not recorded in the manifest):")
            print(trtexec_command(bundle.graphs[g].path, bundle.root / f"{g}.{args.precision}.engine",
                                  args.precision, args.workspace_mb, caches[g] if args.precision == "int8" else None))
        hint = TORCH_TRT_INSTALL_HINT if "torch_tensorrt" in str(exc) else INSTALL_HINT
        message = f"cannot build engines here: {exc}" + ("" if hint in str(exc) else f"\n{hint}")
        return _fail(message, code=2)
    try:
        runtime_info = tensorrt_runtime_info()
    except BundleError as exc:
        return _fail(str(exc))
    print(f"TensorRT {runtime_info[0]} on {runtime_info[1]} (sm {runtime_info[2]})")
    for g in graphs:
        record = bundle.graphs[g]
        engine_path = bundle.root / engine_file_name(g, args.precision, *runtime_info[:2])
        print(f"# {g}: equivalent trtexec command:")
        print(trtexec_command(record.path, engine_path, args.precision, args.workspace_mb,
                              caches[g] if args.precision == "int8" else None))
        try:
            built = build_and_record(bundle, g, args.precision, runtime_info, _builder(args, bundle, g, caches[g]),
                                     inspect_fn=inspect_engine_bytes, workspace_mb=args.workspace_mb, via=args.via,
                                     **({"calibration_cache": caches[g].name} if args.precision == "int8" else {}))
        except (EngineBuildError, BundleError, ValueError, RuntimeError) as exc:
            return _fail(f"building the {g} engine failed: {exc}")
        print(f"{g}: {built.path.name} [{built.precision}, TensorRT {built.tensorrt_version}, {built.gpu_name}]")
    return 0


def _builder(args, bundle, graph: str, cache_path: Path):
    if args.via == "torch-tensorrt":
        return lambda record: torch_tensorrt_engine(args.checkpoint, bundle, graph, args.precision, args.workspace_mb)

    def build(record):
        calibrator = None
        if args.precision == "int8":
            calibrator = make_entropy_calibrator(args.calib_images, bundle, graph, cache_path, args.calib_max_images)
        try:
            return build_engine_bytes(record.path, args.precision, args.workspace_mb, calibrator)
        finally:
            if calibrator is not None:
                calibrator.free()

    return build


def _checkpoint_mismatch(bundle, checkpoint: Path) -> str | None:
    """An engine compiled from a checkpoint is recorded against the bundle's ONNX
    hash, so the checkpoint must be the one the bundle was exported from. The
    manifest's record of it (if the exporter wrote one) is checked; else warn."""
    source = bundle.manifest.get("checkpoint")
    recorded = source.get("sha256") if isinstance(source, dict) else bundle.manifest.get("checkpoint_sha256")
    if recorded is None:
        print(f"warning: the manifest does not record which checkpoint {bundle.root.name} was exported from; make "
              f"sure {checkpoint} is that one", file=sys.stderr)
        return None
    if sha256_of(checkpoint) != recorded:
        return (f"{checkpoint} is not the checkpoint this bundle was exported from (sha256 differs); export a new "
                "bundle from it first")
    return None


if __name__ == "__main__":
    sys.exit(main())
