"""`check`: how well a homography registers recorded EO/IR pairs, with the same check the node runs live."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from csk_ros.calibrate.fit import CalibrationRefused
from csk_ros.calibrate.images import pair_files, pair_name, read_eo, read_ir
from csk_ros.imaging.registration import check_registration
from csk_ros.logic.config import parse_homography

PARAMETER = "eo_to_ir_homography"


def homography_from_values(values) -> np.ndarray | None:
    try:
        return parse_homography(values)
    except (TypeError, ValueError) as error:
        raise CalibrationRefused(str(error)) from None


def homography_from_params(path: str | Path) -> np.ndarray | None:
    """eo_to_ir_homography from a ROS 2 params file, under any node key (`segment_node`, `/**`, ...)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationRefused(f"no params file {path}")
    data = yaml.safe_load(path.read_text()) or {}
    found = [node["ros__parameters"][PARAMETER] for node in (data.values() if isinstance(data, dict) else [])
             if isinstance(node, dict) and PARAMETER in (node.get("ros__parameters") or {})]
    if not found:
        raise CalibrationRefused(f"{path}: no {PARAMETER} under <node>: ros__parameters")
    return homography_from_values(found[0])


def check_folders(eo_dir: str | Path, ir_dir: str | Path, homography: np.ndarray | None,
                  search_px: int = 24) -> list[dict]:
    rows = []
    for eo_path, ir_path in pair_files(eo_dir, ir_dir):
        result = check_registration(read_eo(eo_path), read_ir(ir_path), homography, search_px=search_px)
        rows.append(_row(pair_name(eo_path, ir_path), result))
    if not rows:
        raise CalibrationRefused(f"no image pairs in {eo_dir} / {ir_dir}")
    return rows


def check_bag(bag: str | Path, homography: np.ndarray | None, every: int = 10, search_px: int = 24,
              eo_topic: str | None = None, ir_topic: str | None = None) -> list[dict]:
    """The same on every N-th EO/IR pair of a bag (paired by stamp, as `python -m csk_ros.bag to-images`)."""
    from csk_ros.bag.bagio import BagError
    from csk_ros.bag.images import bag_pairs

    try:
        rows = [_row(f"{stamp:.6f}", check_registration(eo, ir, homography, search_px=search_px))
                for stamp, eo, ir in bag_pairs(Path(bag), eo_topic, ir_topic, every)]
    except BagError as error:
        raise CalibrationRefused(str(error)) from None
    if not rows:
        raise CalibrationRefused(f"no EO/IR pairs in {bag}")
    return rows


def _row(pair: str, result) -> dict:
    return {"pair": pair, "valid": result.valid, "score": result.score, "best_score": result.best_score,
            "dx_px": result.shift_px[0], "dy_px": result.shift_px[1], "offset_px": result.offset_px,
            "note": result.note}


def summary(rows: list[dict]) -> dict:
    judged = [r for r in rows if r["valid"]]
    offsets = [r["offset_px"] for r in judged]
    return {"pairs": len(rows), "judged": len(judged),
            "median_offset_px": float(np.median(offsets)) if offsets else math.nan,
            "max_offset_px": float(np.max(offsets)) if offsets else math.nan,
            "median_score": float(np.median([r["score"] for r in judged])) if judged else math.nan}
