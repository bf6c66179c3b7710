"""One EO->IR homography from point correspondences, with the figures that say whether to trust it.

Shared by `board` and `points`: RANSAC finds the consensus (a mis-detected corner or a mis-click cannot
drag the estimate), a least-squares fit with Levenberg-Marquardt refinement on the inliers gives the
final matrix, and the RMS is taken over EVERY correspondence, so an outlier is reported, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_POINTS = 4  # a homography has 8 degrees of freedom: 4 points in general position
# Far above corner noise (0.1-0.3 px; 1 px per coordinate in both images stays inside it), far below a corner
# taken for its neighbour (a square, tens of px) or a mis-click on the wrong feature.
RANSAC_THRESHOLD_PX = 5.0


class CalibrationRefused(Exception):
    """The inputs cannot give a homography worth using; the message (one line) says why."""


@dataclass(frozen=True)
class HomographyFit:
    homography: np.ndarray  # 3x3, EO pixels -> IR pixels, H[2, 2] = 1
    rms_px: float  # over all correspondences, IR pixels
    inlier_rms_px: float
    max_error_px: float
    inliers: int
    points: int
    errors_px: np.ndarray  # per correspondence


def transfer(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Nx2 points mapped through a homography."""
    return cv2.perspectiveTransform(np.asarray(points, np.float64).reshape(-1, 1, 2), homography).reshape(-1, 2)


def transfer_errors(homography: np.ndarray, eo: np.ndarray, ir: np.ndarray) -> np.ndarray:
    return np.linalg.norm(transfer(homography, eo) - np.asarray(ir, np.float64).reshape(-1, 2), axis=1)


def rms(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(errors)))) if len(errors) else float("nan")


def refine(eo: np.ndarray, ir: np.ndarray, homography: np.ndarray, inliers: np.ndarray,
           rounds: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Least squares on the inliers, then the inliers again by the refined matrix, until they settle: RANSAC's
    inliers agree with a matrix from 4 noisy points, and keeping them would bias the fit towards it."""
    for _ in range(rounds):
        if inliers.sum() < MIN_POINTS:
            raise CalibrationRefused(f"only {int(inliers.sum())} of {len(eo)} points agree on one homography")
        fitted, _ = cv2.findHomography(eo[inliers], ir[inliers], 0)
        if fitted is None:
            break
        homography = fitted / fitted[2, 2]
        again = transfer_errors(homography, eo, ir) < RANSAC_THRESHOLD_PX
        if np.array_equal(again, inliers):
            break
        inliers = again
    return homography / homography[2, 2], inliers


def fit_homography(eo: np.ndarray, ir: np.ndarray, max_rms_px: float, labels: list[str] | None = None) -> HomographyFit:
    """Fit EO->IR over Nx2 point arrays; refuse too few points, a degenerate layout or an RMS above max_rms_px.
    `labels` (one per point, e.g. its image pair) name the worst point in that refusal."""
    eo = np.asarray(eo, np.float64).reshape(-1, 2)
    ir = np.asarray(ir, np.float64).reshape(-1, 2)
    if len(eo) != len(ir):
        raise CalibrationRefused(f"{len(eo)} EO points but {len(ir)} IR points")
    if len(eo) < MIN_POINTS:
        raise CalibrationRefused(f"too few points: {len(eo)} correspondences, a homography needs at least "
                                 f"{MIN_POINTS}")
    rough, mask = cv2.findHomography(eo, ir, cv2.RANSAC, RANSAC_THRESHOLD_PX, maxIters=5000, confidence=0.999)
    if rough is None:
        raise CalibrationRefused(f"degenerate points: no homography fits {len(eo)} correspondences "
                                 "(collinear or repeated points?)")
    final, inliers = refine(eo, ir, rough, mask.ravel().astype(bool))
    errors = transfer_errors(final, eo, ir)
    result = HomographyFit(final, rms(errors), rms(errors[inliers]), float(errors.max()), int(inliers.sum()),
                           len(eo), errors)
    if not result.rms_px <= max_rms_px:
        worst = int(np.argmax(errors))
        where = f"#{worst}" + (f" ({labels[worst]})" if labels else "")
        raise CalibrationRefused(f"fit RMS {result.rms_px:.2f} px > --max-rms {max_rms_px:g} px over {len(eo)} "
                                 f"points ({result.inliers} RANSAC inliers, worst point {where} off by "
                                 f"{errors[worst]:.1f} px): not a single homography")
    return result
