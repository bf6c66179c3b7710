"""Find the calibration target in one image, EO or IR.

A heated or cooled board can show with either polarity in thermal, at low contrast and blurred, so each
detector is tried on the image as it is, inverted, and after local contrast equalisation (CLAHE), until
one finds the whole grid. Corners come back in the detector's own order (which may differ between the
two cameras: the board module reconciles it).
"""

from __future__ import annotations

import cv2
import numpy as np

from csk_ros.imaging.registration import eo_grey

PATTERNS = ("chessboard", "circles")
_CHESSBOARD_FLAGS = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY


def variants(grey: np.ndarray):
    """The image as it is, inverted, then contrast-equalised in both polarities (tried lazily, in that order)."""
    yield grey
    yield 255 - grey
    equalised = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(grey)
    yield equalised
    yield 255 - equalised


def find_target(image: np.ndarray, pattern: str, size: tuple[int, int]) -> np.ndarray | None:
    """Nx2 float64 target points (N = cols x rows) or None. size = (cols, rows): inner corners of a chessboard,
    circles of a symmetric circle grid. EO may be RGB; IR any depth (percentile-scaled to 8 bits)."""
    grey = eo_grey(image)
    find = _chessboard if pattern == "chessboard" else _circles
    for candidate in variants(grey):
        points = find(candidate, size)
        if points is not None:
            return points.reshape(-1, 2).astype(np.float64)
    return None


def _chessboard(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    found, corners = cv2.findChessboardCornersSB(grey, size, flags=_CHESSBOARD_FLAGS)
    return corners if found else None


def _circles(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """Dark circles on a light board (the image is also tried inverted for bright, heated ones)."""
    found, centres = cv2.findCirclesGrid(grey, size, flags=cv2.CALIB_CB_SYMMETRIC_GRID,
                                         blobDetector=_blob_detector(grey.shape))
    return centres if found else None


def _blob_detector(shape: tuple[int, int]):
    """Blobs from a few pixels wide (a small thermal image) to a tenth of the frame; loose shape limits, since
    perspective turns circles into ellipses and thermal blur rounds them off."""
    params = cv2.SimpleBlobDetector_Params()
    params.minThreshold, params.maxThreshold, params.thresholdStep = 10, 245, 10
    params.filterByArea, params.minArea, params.maxArea = True, 8, 0.1 * shape[0] * shape[1]
    params.filterByCircularity, params.minCircularity = True, 0.5
    params.filterByConvexity, params.minConvexity = True, 0.8
    params.filterByInertia, params.minInertiaRatio = True, 0.1
    params.filterByColor, params.blobColor = True, 0
    params.minDistBetweenBlobs = 3
    return cv2.SimpleBlobDetector_create(params)
