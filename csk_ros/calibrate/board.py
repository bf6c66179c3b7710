"""`board`: EO/IR image pairs of one calibration target -> the EO->IR homography.

The detectors may number the same grid differently in the two cameras (a polarity change or a board
seen upside down starts the count at another corner). Any renumbering of a planar grid by one of its
symmetries still fits SOME homography within one pair, so the order cannot be settled pair by pair;
it is settled across pairs, where only the true numbering gives ONE homography for every board pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from csk_ros.calibrate.detect import find_target
from csk_ros.calibrate.fit import CalibrationRefused, HomographyFit, fit_homography, rms, transfer_errors
from csk_ros.calibrate.images import pair_files, pair_name, read_eo, read_ir


@dataclass
class BoardPair:
    name: str
    eo: np.ndarray  # Nx2 target points in EO pixels
    ir: np.ndarray  # Nx2, renumbered to match eo
    rms_px: float = float("nan")


@dataclass
class BoardResult:
    fit: HomographyFit
    pairs: list[BoardPair]
    skipped: dict[str, str] = field(default_factory=dict)  # pair name -> why it was not used


def grid_symmetries(size: tuple[int, int]) -> list[np.ndarray]:
    """Index permutations of a cols x rows grid that map it onto itself: flips and the half turn, and the
    quarter turns and transposes too when the grid is square."""
    cols, rows = size
    grid = np.arange(cols * rows).reshape(rows, cols)
    moves = [grid, grid[::-1, :], grid[:, ::-1], grid[::-1, ::-1]]
    if cols == rows:
        moves += [grid.T, grid.T[::-1, :], grid.T[:, ::-1], grid.T[::-1, ::-1]]
    return [m.ravel() for m in moves]


def rotation_deg(homography: np.ndarray) -> float:
    """In-plane rotation of a homography's linear part: a rig whose cameras are not mounted turned
    against each other is near 0, a renumbered grid near 90 or 180; a mirror (no lens does that) 180."""
    a, b, c, d = homography[0, 0], homography[0, 1], homography[1, 0], homography[1, 1]
    if a * d - b * c <= 0:
        return 180.0
    return abs(float(np.degrees(np.arctan2(c - b, a + d))))


def reconcile_order(pairs: list[BoardPair], size: tuple[int, int]) -> list[BoardPair]:
    """Renumber each pair's IR points so that one homography fits all pairs best; between equally good
    numberings (one pair only), the one with the least rotation between the cameras."""
    moves = grid_symmetries(size)
    candidates = []
    for move in moves:
        reference, _ = cv2.findHomography(pairs[0].eo, pairs[0].ir[move], 0)
        if reference is None:
            continue
        chosen = [move]
        for pair in pairs[1:]:
            errors = [rms(transfer_errors(reference, pair.eo, pair.ir[m])) for m in moves]
            chosen.append(moves[int(np.argmin(errors))])
        eo = np.concatenate([p.eo for p in pairs])
        ir = np.concatenate([p.ir[m] for p, m in zip(pairs, chosen)])
        joint, _ = cv2.findHomography(eo, ir, 0)
        if joint is not None:
            candidates.append((rms(transfer_errors(joint, eo, ir)), rotation_deg(joint), chosen))
    if not candidates:
        return pairs
    best_rms = min(c[0] for c in candidates)
    good = [c for c in candidates if c[0] <= 1.5 * best_rms + 0.05]
    chosen = min(good, key=lambda c: c[1])[2]
    return [BoardPair(p.name, p.eo, p.ir[m]) for p, m in zip(pairs, chosen)]


Images = list[tuple[str, np.ndarray, np.ndarray]]  # (pair name, EO, IR)


def calibrate_images(images: Images, pattern: str, size: tuple[int, int], max_rms_px: float,
                     min_pairs: int) -> BoardResult:
    """(name, EO, IR) images -> the fit over every pair where both cameras show the whole target."""
    found, skipped = [], {}
    for name, eo_image, ir_image in images:
        eo = find_target(eo_image, pattern, size)
        ir = find_target(ir_image, pattern, size) if eo is not None else None
        if eo is None or ir is None:
            skipped[name] = f"no {size[0]}x{size[1]} {pattern} found in {'EO' if eo is None else 'IR'}"
            continue
        found.append(BoardPair(name, eo, ir))
    if len(found) < min_pairs:
        why = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
        raise CalibrationRefused(f"too few usable pairs: {len(found)} of {len(images)} show the target in both "
                                 f"cameras, --min-pairs is {min_pairs}" + (f" ({why})" if why else ""))
    pairs = reconcile_order(found, size)
    labels = [f"pair {p.name}" for p in pairs for _ in range(len(p.eo))]
    fit = fit_homography(np.concatenate([p.eo for p in pairs]), np.concatenate([p.ir for p in pairs]), max_rms_px,
                         labels)
    for pair in pairs:
        pair.rms_px = rms(transfer_errors(fit.homography, pair.eo, pair.ir))
    return BoardResult(fit, pairs, skipped)


def calibrate_folders(eo_dir: str | Path, ir_dir: str | Path, pattern: str, size: tuple[int, int],
                      max_rms_px: float, min_pairs: int) -> tuple[BoardResult, Images]:
    """Also returns the images read, for the check picture."""
    images = [(pair_name(e, i), read_eo(e), read_ir(i)) for e, i in pair_files(eo_dir, ir_dir)]
    if not images:
        raise CalibrationRefused(f"too few usable pairs: no images in {eo_dir} / {ir_dir}")
    return calibrate_images(images, pattern, size, max_rms_px, min_pairs), images
