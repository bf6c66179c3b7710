"""A model to swap in while the node serves the old one (~/reload_model): loaded and proven beside it.

Loading goes through `load_bundle` (the bundle contract, the graph I/O
contract, the engine rules, the backend's warm-up); on top of that one
inference per graph must return masks of the bundle's size holding only the
bundle's class ids, so a bundle that loads but answers nonsense is refused
before it serves a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from csk_ros.backends import Segmenter, load_configured
from csk_ros.bundle import BundleError


@dataclass(frozen=True)
class ModelChange:
    """What a swap changes for the node's subscribers."""

    classes_changed: bool  # class names or palette: ~/classes and ~/label_info are re-latched
    size_changed: bool  # the model's input size: output_size 'model' masks change size


def load_checked(config, log=None) -> Segmenter:
    """The bundle at config.model_dir, loaded with the node's backend settings and checked by one inference
    per graph. Raises BundleError (or ValueError/OSError/RuntimeError from the backend) saying why."""
    segmenter = load_configured(config, log)
    try:
        check_outputs(segmenter)
    except BundleError:
        segmenter.close()
        raise
    return segmenter


def check_outputs(segmenter: Segmenter) -> None:
    """One inference per graph on a mid-grey frame: uint8 masks of the bundle's size with class ids in range."""
    bundle = segmenter.bundle
    eo = np.full((bundle.height, bundle.width, 3), 128, np.uint8)
    ir = np.full((bundle.height, bundle.width), 128, np.uint8)
    runs = {"ir_only": lambda: segmenter.ir_only(ir)}
    if segmenter.has_fused:
        runs["fused"] = lambda: segmenter.fused(eo, ir)
    for graph, run in runs.items():
        mask, conf = run()
        for name, out in (("mask", mask), ("confidence", conf)):
            if out.dtype != np.uint8 or out.shape != (bundle.height, bundle.width):
                raise BundleError(f"{bundle.root}: graph '{graph}' returned {name} {out.dtype} {out.shape}, "
                                  f"expected uint8 {(bundle.height, bundle.width)}")
        if int(mask.max()) >= len(bundle.class_names):
            raise BundleError(f"{bundle.root}: graph '{graph}' returned class id {int(mask.max())} but the bundle "
                              f"names {len(bundle.class_names)} classes")


def describe_change(old: Segmenter, new: Segmenter) -> ModelChange:
    a, b = old.bundle, new.bundle
    return ModelChange(classes_changed=(a.class_names, a.palette) != (b.class_names, b.palette),
                       size_changed=(a.height, a.width) != (b.height, b.width))
