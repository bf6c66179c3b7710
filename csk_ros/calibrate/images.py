"""Image folders -> EO/IR pairs, read as the node would see them (EO RGB, IR one channel of any depth)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from csk_ros.calibrate.fit import CalibrationRefused

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationRefused(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def pair_files(eo_dir: str | Path, ir_dir: str | Path) -> list[tuple[Path, Path]]:
    """Pairs by matching stems when the two folders share names, else by sorted order (same count needed)."""
    eo, ir = image_files(eo_dir), image_files(ir_dir)
    ir_by_stem = {p.stem: p for p in ir}
    common = [p for p in eo if p.stem in ir_by_stem]
    if common:
        return [(p, ir_by_stem[p.stem]) for p in common]
    if len(eo) != len(ir):
        raise CalibrationRefused(f"cannot pair {len(eo)} EO images in {eo_dir} with {len(ir)} IR images in {ir_dir}: "
                                 "no shared file names and different counts")
    return list(zip(eo, ir))


def pair_name(eo: Path, ir: Path) -> str:
    return eo.name if eo.stem == ir.stem else f"{eo.name}+{ir.name}"


def read_eo(path: str | Path) -> np.ndarray:
    """HxWx3 RGB uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CalibrationRefused(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_ir(path: str | Path) -> np.ndarray:
    """HxW, the file's own depth (8 or 16 bit); a colour file is taken as grey."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CalibrationRefused(f"cannot read image {path}")
    if image.ndim == 3:
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    return image
