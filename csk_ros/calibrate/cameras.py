"""`cameras`: the EO->IR homography from the two calibrations and their relative pose, for one distance.

Two cameras with a baseline see a scene through ONE homography only if it is a plane: here the plane
facing the EO camera at distance d (normal n = [0, 0, 1] in the EO frame, n.X = d). With x_ir = R x_eo + t,
a point on it maps by H = K_ir (R + t n^T / d) K_eo^-1 (the usual K_ir (R - t n^T / d) K_eo^-1 with the
plane written n.X + d = 0). Anything nearer or farther lands off by a parallax the table reports.
Lens distortion is ignored: the node warps the images as they arrive, so they must be rectified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from csk_ros.calibrate.fit import CalibrationRefused, transfer

GRID_STEPS = (16, 12)  # EO image grid the parallax is measured over (points across, down)


@dataclass(frozen=True)
class CameraInfo:
    matrix: np.ndarray  # K, 3x3
    size: tuple[int, int]  # (width, height)
    distorted: bool  # any non-zero distortion coefficient


def _load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CalibrationRefused(f"no such file {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise CalibrationRefused(f"{path}: expected a YAML mapping")
    return data


def _matrix(value, shape: tuple[int, int], what: str) -> np.ndarray:
    data = value.get("data") if isinstance(value, dict) else value
    try:
        array = np.array(data, np.float64).reshape(shape)
    except (TypeError, ValueError):
        raise CalibrationRefused(f"{what} must hold {shape[0] * shape[1]} numbers") from None
    if not np.all(np.isfinite(array)):
        raise CalibrationRefused(f"{what} is not finite")
    return array


def read_camera_info(path: str | Path) -> CameraInfo:
    """ROS camera_calibration YAML: image_width, image_height, camera_matrix {rows, cols, data}, ..."""
    data = _load_yaml(path)
    try:
        size = (int(data["image_width"]), int(data["image_height"]))
        matrix = _matrix(data["camera_matrix"], (3, 3), f"{path}: camera_matrix")
    except KeyError as missing:
        raise CalibrationRefused(f"{path}: camera_info lacks {missing}") from None
    distortion = (data.get("distortion_coefficients") or {}).get("data") or []
    return CameraInfo(matrix, size, any(abs(float(c)) > 0.0 for c in distortion))


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rotation from roll, pitch, yaw in radians about fixed x, y, z (the ROS convention): Rz Ry Rx."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), \
        math.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def read_extrinsics(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """EO->IR pose (x_ir = R x_eo + t, metres): `R` (9 numbers row-major or 3x3) or `rpy` (radians), and `t`."""
    data = _load_yaml(path)
    if "t" not in data or ("R" not in data) == ("rpy" not in data):
        raise CalibrationRefused(f"{path}: extrinsics need `t` (3 numbers, m) and one of `R` (3x3) or `rpy` (rad)")
    rotation = _matrix(data["R"], (3, 3), f"{path}: R") if "R" in data else rpy_matrix(
        *_matrix(data["rpy"], (3,), f"{path}: rpy"))
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) or np.linalg.det(rotation) < 0:
        raise CalibrationRefused(f"{path}: R is not a rotation matrix")
    return rotation, _matrix(data["t"], (3,), f"{path}: t")


def plane_homography(eo: CameraInfo, ir: CameraInfo, rotation: np.ndarray, translation: np.ndarray,
                     distance_m: float) -> np.ndarray:
    if not distance_m > 0.0:
        raise CalibrationRefused(f"--distance must be > 0 m, got {distance_m}")
    normal = np.array([0.0, 0.0, 1.0])
    h = ir.matrix @ (rotation + np.outer(translation, normal) / distance_m) @ np.linalg.inv(eo.matrix)
    return h / h[2, 2]


def eo_grid(eo: CameraInfo) -> np.ndarray:
    xs = np.linspace(0, eo.size[0] - 1, GRID_STEPS[0])
    ys = np.linspace(0, eo.size[1] - 1, GRID_STEPS[1])
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def project_at_distance(eo: CameraInfo, ir: CameraInfo, rotation: np.ndarray, translation: np.ndarray,
                        pixels: np.ndarray, distance_m: float) -> np.ndarray:
    """Where EO pixels land in IR for a scene on the plane at `distance_m` (the exact, two-camera answer)."""
    rays = np.linalg.inv(eo.matrix) @ np.vstack([pixels.T, np.ones(len(pixels))])
    points = rays / rays[2] * distance_m
    seen = ir.matrix @ (rotation @ points + translation[:, None])
    return (seen[:2] / seen[2]).T


def parallax_table(eo: CameraInfo, ir: CameraInfo, rotation: np.ndarray, translation: np.ndarray,
                   homography: np.ndarray, distances_m: list[float]) -> list[dict]:
    """Per distance: how far H puts EO pixels from where a scene at that distance really is in IR (max and
    median over an EO image grid, counting the points that land inside the IR image)."""
    pixels = eo_grid(eo)
    mapped = transfer(homography, pixels)
    rows = []
    for distance in distances_m:
        true = project_at_distance(eo, ir, rotation, translation, pixels, distance)
        inside = (true[:, 0] >= 0) & (true[:, 0] <= ir.size[0] - 1) & (true[:, 1] >= 0) & (true[:, 1] <= ir.size[1] - 1)
        errors = np.linalg.norm(mapped - true, axis=1)[inside if inside.any() else slice(None)]
        rows.append({"distance_m": distance, "max_px": float(errors.max()), "median_px": float(np.median(errors)),
                     "points": int(errors.size)})
    return rows
