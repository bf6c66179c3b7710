"""Is the EO->IR registration still right? A cheap check the node can run on live frames.

Colour and thermal images share where edges are, not how bright either side of an edge is (a warm
person can be darker than the road in EO and brighter in IR), so the check compares edge strength,
never intensities: gradient magnitudes of both images, softly saturated so a strong colour edge
and a weak thermal one count alike. The EO image is warped into the IR frame with the homography,
and a centre crop of its edge map is slid over the IR edge map (normalised cross-correlation) to
find the translation, applied after the homography, that aligns them best. Everything runs at a
reduced resolution (`work_width`); shifts are reported in full IR pixels.

Only translation is searched: a rotated or rescaled misregistration lowers `best_score` but is not
measured in `offset_px`. Translation is what a bumped camera mount (pan/tilt) and a scene at another
depth than the calibration plane (parallax) produce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from csk_ros.imaging.thermal import ThermalScaling, scale_thermal_to_uint8

BLUR_SIGMA = 1.0  # work pixels: removes noise and aliasing before the gradients, keeps edges 2-3 px wide
# An edge pixel has a gradient (grey levels per work pixel) above both an absolute floor and a multiple of the
# frame's median gradient. Most pixels of a scene are not on edges, so the median is the noise level: with
# Rayleigh-distributed noise gradients, 3x the median is exceeded by 0.2 % of pixels, under MIN_EDGE_FRACTION.
EDGE_MIN_LEVEL = 4.0
EDGE_NOISE_FACTOR = 3.0
MIN_EDGE_FRACTION = 0.01  # fewer edge pixels than this in either image: flat or dark, nothing to judge
# Unrelated scenes still correlate by chance over a +-search window: on 60 synthetic pairs of unrelated scenes
# of large shapes (tests/unit/test_registration.py's generator) the best NCC reached 0.12 (median 0.07). A best
# match under 0.15 is no evidence of alignment. Chosen on synthetic scenes only, never on the real frames the
# benchmark reports.
MIN_MATCH_NCC = 0.15
# Dark EO (night): few, low-contrast edges, and the thermal edges it should match are of other objects (lamps,
# warm engines), so a weak best match can land anywhere in the window. A dark frame's match may be held to a
# higher floor. Chosen on ../shared/data/msrs_unlabelled (311 registered pairs, never reported on) by
# benchmarks/registration_thresholds.py: every floor above MIN_MATCH_NCC (0.20-0.40, dark below 30-60) only
# thinned the verdict's window and never removed a false WARN the at-limit and consensus rules of
# registration_health.py left, while it slowed 8 px detection; so dark frames keep the common floor.
DARK_EO_LUMA = 40.0  # mean grey level (0-255) of the warped EO over the IR frame; MSRS day frames are >= 42
DARK_MIN_MATCH_NCC = MIN_MATCH_NCC
SCENE_GRID = (8, 6)  # (w, h) cells of the IR thumbnail a check keeps
# Two checks see the same view when their thumbnails differ by less than this (grey levels, mean absolute).
# Chosen on ../shared/data/msrs_unlabelled: one pair checked again with sensor noise (sigma 2) differed by
# 0.69 at most; two different pairs by 2.21 at least, even neighbours in time (median 7.9).
SAME_SCENE_GREY = 1.5
MIN_TEMPLATE_FRACTION = 0.25  # the EO must cover at least this share of the IR frame (inside the search margin)
_IR_SCALING = ThermalScaling()  # the node's default: per-frame 1st..99th percentile -> 0..255


@dataclass(frozen=True)
class RegistrationCheck:
    """Result of one check. Scores are the NCC of edge maps over the EO crop, in [-1, 1]; shifts in IR pixels.
    `offset_px` is the length of `shift_px`: translation only (no rotation is searched).

    When `valid` is False the frames could not be judged (`note` says why) and the numbers are NaN, except
    for a weak match, where they are kept for inspection but mean nothing. `at_limit`: the best match lies on
    the border of the search window, so the true shift may be larger, or the match is a chance one (the
    verdict counts it only when other checks agree, registration_health.py). `eo_luma`: mean grey level of
    the warped EO (NaN when not measured). `scene`: a thumbnail of the IR frame (scene_distance)."""

    score: float
    best_score: float
    shift_px: tuple[float, float]
    offset_px: float
    valid: bool
    note: str = ""
    at_limit: bool = False
    eo_luma: float = float("nan")
    scene: tuple[float, ...] = ()  # the IR view in SCENE_GRID area means: tells a held view from a new one


def check_registration(eo: np.ndarray, ir: np.ndarray, homography: np.ndarray | None, *, search_px: int = 24,
                       work_width: int = 320) -> RegistrationCheck:
    """Score `homography` (EO pixels -> IR pixels; None: EO only resized to the IR size) on one EO/IR pair and
    find the best extra translation within +-search_px IR pixels."""
    ir8 = ir_to_uint8(ir)
    ir_h, ir_w = ir8.shape
    scale = min(1.0, work_width / ir_w)
    size = (max(1, round(ir_w * scale)), max(1, round(ir_h * scale)))
    sx, sy = size[0] / ir_w, size[1] / ir_h
    eo_to_ir = pixel_scale(ir_w / eo.shape[1], ir_h / eo.shape[0]) if homography is None else np.asarray(homography)
    eo_work, covered = warp_to_work(eo_grey(eo), pixel_scale(sx, sy) @ eo_to_ir, size)
    ir_work = cv2.resize(ir8, size, interpolation=cv2.INTER_AREA) if size != (ir_w, ir_h) else ir8
    radius = max(1, math.ceil(search_px * min(sx, sy)))
    crop = template_rect(covered, radius)
    if crop is None:
        return _unjudged("the warped EO covers too little of the IR frame")
    x0, y0, x1, y1 = crop
    eo_strength, eo_edges = edge_map(eo_work, covered)
    ir_strength, ir_edges = edge_map(ir_work)
    template = eo_strength[y0:y1, x0:x1]
    search = ir_strength[y0 - radius:y1 + radius, x0 - radius:x1 + radius]
    if eo_edges[y0:y1, x0:x1].mean() < MIN_EDGE_FRACTION:
        return _unjudged("EO has too few edges (flat or dark frame)")
    if ir_edges[y0 - radius:y1 + radius, x0 - radius:x1 + radius].mean() < MIN_EDGE_FRACTION:
        return _unjudged("IR has too few edges (flat frame)")
    inside = covered[y0:y1, x0:x1]
    if inside.all():
        surface = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED)
    else:
        surface = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED, mask=inside.astype(np.float32))
    surface = np.nan_to_num(surface, nan=-1.0, posinf=-1.0, neginf=-1.0)
    (dx, dy), at_limit = refine_peak(surface)
    shift = ((dx - radius) / sx, (dy - radius) / sy)
    score, best = float(surface[radius, radius]), float(surface.max())
    notes = []
    if at_limit:
        notes.append(f"best match at the search limit: the shift is {search_px} px or more")
    luma = float(eo_work[covered].mean())
    is_dark = luma < DARK_EO_LUMA
    floor = DARK_MIN_MATCH_NCC if is_dark else MIN_MATCH_NCC
    valid = best >= floor
    if not valid:
        dark = f" for dark EO (mean {luma:.0f} < {DARK_EO_LUMA:g})" if is_dark else ""
        notes.insert(0, f"no edge match (best NCC {best:.3f} < {floor}{dark}): scenes differ or shift too large")
    return RegistrationCheck(score, best, (float(shift[0]), float(shift[1])), float(math.hypot(*shift)), valid,
                             "; ".join(notes), at_limit, luma, scene_thumbnail(ir_work))


def scene_thumbnail(ir8: np.ndarray) -> tuple[float, ...]:
    small = cv2.resize(ir8, SCENE_GRID, interpolation=cv2.INTER_AREA).astype(np.float32)
    return tuple(float(v) for v in small.ravel())


def scene_distance(a: RegistrationCheck, b: RegistrationCheck) -> float:
    """Mean absolute difference of two checks' IR thumbnails (grey levels of the percentile-scaled IR);
    inf when either has none. Sensor noise averages out over a thumbnail cell (a 640x480 frame: 4800 pixels
    a cell), so one view held still stays far below SAME_SCENE_GREY and another view lies far above it."""
    if not a.scene or not b.scene or len(a.scene) != len(b.scene):
        return math.inf
    return float(np.mean(np.abs(np.subtract(a.scene, b.scene))))


def _unjudged(note: str) -> RegistrationCheck:
    nan = float("nan")
    return RegistrationCheck(nan, nan, (nan, nan), nan, False, note)


def ir_to_uint8(ir: np.ndarray) -> np.ndarray:
    """16-bit / float IR to 8 bits by the node's percentile rule (robust to hot and cold outliers)."""
    if ir.ndim == 3:
        ir = cv2.cvtColor(ir, cv2.COLOR_BGR2GRAY) if ir.shape[2] == 3 else ir[:, :, 0]
    return scale_thermal_to_uint8(np.ascontiguousarray(ir), _IR_SCALING)


def eo_grey(eo: np.ndarray) -> np.ndarray:
    if eo.ndim == 2:
        return eo if eo.dtype == np.uint8 else ir_to_uint8(eo)
    return cv2.cvtColor(np.ascontiguousarray(eo[:, :, :3]), cv2.COLOR_RGB2GRAY)


def pixel_scale(sx: float, sy: float) -> np.ndarray:
    """Pixel-centre scaling as cv2.resize maps pixels: x' = sx * (x + 0.5) - 0.5."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def warp_to_work(grey: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """EO warped into the work frame, and where it has data. A strong reduction is first done by area
    averaging (warpPerspective samples, so it would alias); borders are replicated so the edge of the
    coverage makes no false edge (the coverage mask excludes it anyway)."""
    centre = np.array([grey.shape[1] / 2, grey.shape[0] / 2])
    shrink = min(1.0, math.sqrt(abs(np.linalg.det(local_jacobian(matrix, centre)))))
    if shrink < 0.75:
        small = (max(1, round(grey.shape[1] * shrink)), max(1, round(grey.shape[0] * shrink)))
        pre = pixel_scale(small[0] / grey.shape[1], small[1] / grey.shape[0])
        grey = cv2.resize(grey, small, interpolation=cv2.INTER_AREA)
        matrix = matrix @ np.linalg.inv(pre)
    warped = cv2.warpPerspective(grey, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ones = np.full(grey.shape, 255, np.uint8)
    covered = cv2.warpPerspective(ones, matrix, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0)
    # Pixels within the blur + gradient footprint of the coverage edge see replicated data: leave them out.
    covered = cv2.erode(covered, np.ones((5, 5), np.uint8)) > 0
    return warped, covered


def local_jacobian(matrix: np.ndarray, point: np.ndarray) -> np.ndarray:
    x, y = point
    w = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
    u = matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]
    v = matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]
    return np.array([[matrix[0, 0] * w - u * matrix[2, 0], matrix[0, 1] * w - u * matrix[2, 1]],
                     [matrix[1, 0] * w - v * matrix[2, 0], matrix[1, 1] * w - v * matrix[2, 1]]]) / (w * w)


def template_rect(covered: np.ndarray, radius: int) -> tuple[int, int, int, int] | None:
    """The EO crop slid over IR: the covered bounding box, kept `radius` from the border so every shift
    stays inside the IR image. None when it is too small to judge."""
    h, w = covered.shape
    rows, cols = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    if rows.size == 0:
        return None
    x0, x1 = max(radius, int(cols[0])), min(w - radius, int(cols[-1]) + 1)
    y0, y1 = max(radius, int(rows[0])), min(h - radius, int(rows[-1]) + 1)
    if x1 <= x0 or y1 <= y0 or covered[y0:y1, x0:x1].sum() < MIN_TEMPLATE_FRACTION * h * w:
        return None
    return x0, y0, x1, y1


def edge_map(grey: np.ndarray, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Soft edge strength m^2 / (m^2 + e^2) of the gradient magnitude m, with e the edge level: noise maps
    near 0, any real edge near 1, whatever its contrast or polarity. Also returns the edge pixels (m > e).
    `where` limits the noise estimate to the pixels that hold data."""
    blurred = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), BLUR_SIGMA)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    magnitude = cv2.magnitude(gx, gy)
    sample = magnitude[::2, ::2] if where is None else magnitude[::2, ::2][where[::2, ::2]]
    level = max(EDGE_MIN_LEVEL, EDGE_NOISE_FACTOR * float(np.median(sample)) if sample.size else 0.0)
    squared = magnitude * magnitude
    return squared / (squared + np.float32(level * level)), magnitude > level


def refine_peak(surface: np.ndarray) -> tuple[tuple[float, float], bool]:
    """Sub-pixel (x, y) of the surface's maximum by a parabola through it and its neighbours in each axis;
    also whether the maximum lies on the border (the true one may lie beyond)."""
    y, x = np.unravel_index(int(np.argmax(surface)), surface.shape)
    at_limit = x in (0, surface.shape[1] - 1) or y in (0, surface.shape[0] - 1)
    return (x + _parabola(surface[y, x - 1:x + 2]), y + _parabola(surface[y - 1:y + 2, x])), bool(at_limit)


def _parabola(values: np.ndarray) -> float:
    if values.size != 3:
        return 0.0
    left, mid, right = (float(v) for v in values)
    curvature = left - 2.0 * mid + right
    return 0.0 if curvature >= 0.0 else max(-0.5, min(0.5, 0.5 * (left - right) / curvature))
