"""Procedural RGB-thermal street scenes with MFNet labels.

This is a procedural STAND-IN, not real data: numbers measured on it say
nothing about MFNet, PST900 or MSRS. It exists so that the whole pipeline
(training, export, the ROS node, the demo) runs and can be tested on any
machine in minutes, with no dataset download.

The scenes are built so that fusion matters, as on the real benchmarks:
- IR carries heat: persons and cars (engine, wheels, exhaust) are warm, bikes
  slightly warmer than the road, sky and road cool, guardrails a little cooler.
- Painted and passive things (curve, car_stop, bump, color_cone) show the
  thermal MIDDLE GROUND of real imagery: a faint but consistent contrast to
  the asphalt around them that comes from solar absorption, emissivity and
  thermal inertia, and that changes between day and night (model below).
- EO carries colour and texture: orange cones, white/yellow paint, yellow/black
  bumps, varied car and clothing colours.
- At night EO is dark (gain 0.1-0.3) and noisy, with a few lamps and vehicle
  lights; IR of warm objects is produced by the same process as by day, IR of
  passive objects follows the night column of the table below. So painted
  classes are clear in EO by day, faint in IR by day and fainter still at
  night; persons and cars in the dark need IR.

Thermal model of passive objects
--------------------------------
IR is an 8-bit AGC image. The levels this generator always used (sky 20-47,
road 55-75, car body +25..45, engine bay and tyres +55..85, guardrail -6..-12
counts relative to the road) match an AGC that spreads a street scene of about
85 K (cold sky to exhaust) over 256 levels: ``COUNTS_PER_KELVIN = 3``. Persons
(+110..+170) are deliberately exaggerated and stay so. Passive objects get an
apparent-temperature offset dT (kelvin) from the asphalt they sit on, drawn
once per object (paint age, wear, material batch) from the ranges in
``PASSIVE_CONTRAST_K``; IR = road + 3 * dT counts, then the sensor model
(low-frequency drift +-2, blur, noise sigma 1.5-3 counts) applies as for every
other pixel.

By day the offset is ``sun * U(day range)``, with ``sun`` drawn per scene in
[0.3, 1] (overcast or low sun .. clear midday); at night it is ``U(night
range)``. The ranges, and why:

================  ===============  ===============  ===========================
material          day, full sun    night            reasoning
================  ===============  ===============  ===========================
white paint       -5.0 .. -3.0 K   -0.8 .. +0.4 K   solar absorptance ~0.4 vs
(curve, stop bar)                                   asphalt ~0.9; a free white
                                                    surface runs 10-15 K cooler
                                                    than sunlit asphalt, but a
                                                    0.5-3 mm layer is tied to
                                                    the asphalt beneath and
                                                    lateral conduction over a
                                                    10-15 cm stripe leaves about
                                                    a third of that; emissivity
                                                    0.92 vs 0.95 reflects a
                                                    little more cold sky (-0.5 K).
                                                    At night no sun: only the
                                                    emissivity term, partly
                                                    offset by the paint's lower
                                                    radiative loss; sign varies.
yellow paint      -3.0 .. -1.5 K   -0.8 .. +0.4 K   as white paint, absorptance
(curve)                                             ~0.6: half the solar term.
rubber bump,      +1.0 .. +3.0 K   -1.5 .. -0.5 K   black rubber absorbs like
black segments                                      asphalt but is raised, hollow
                                                    underneath and of low thermal
                                                    inertia: warms a little above
                                                    the asphalt in sun, and at
                                                    night, with no stored heat,
                                                    cools below it (inverts).
rubber bump,      -1.5 .. 0.0 K    -1.5 .. -0.5 K   yellow-painted rubber: the
yellow segments                                     black value minus the paint's
                                                    absorptance difference.
concrete block    -3.5 .. -1.5 K   -1.0 .. -0.3 K   concrete albedo ~0.35 vs 0.1:
(car_stop, grey                                     cooler in sun; a 10-15 cm
or painted)                                         block stores less heat than
                                                    the road slab and radiates
                                                    from three faces: a little
                                                    cooler at night too.
plastic cone      -6.0 .. -2.0 K   -2.0 .. -0.5 K   thin-walled hollow PVC stays
(color_cone)                                        near air temperature, while
                                                    sunlit asphalt runs 10-20 K
                                                    above air; at night asphalt
                                                    releases stored heat and the
                                                    cone sits at or below air.
================  ===============  ===============  ===========================

So by day the mean paint contrast is about -6 counts (-2 K) against the
+-2 counts of drift and 1.5-3 counts of noise: visible to a model that looks
for it, far from the +100 of a person; at night it is a count or two of either
sign. Car shadows are drawn in EO only: the cars move, and asphalt's thermal
inertia (minutes to cool) keeps a passing shadow out of IR. These magnitudes
were fixed from the physics above BEFORE any model was trained on them
(benchmarks/quality.py); they are not tuned to any result.

Every sample is a pure function of (seed, split, index): nothing is cached and
DataLoader workers reproduce each other. Geometry follows a pinhole camera
about 1.5 m above a flat road: an object standing on image row y has a pixel
size proportional to (y - horizon).
"""

from __future__ import annotations

import cv2
import numpy as np

from .classes import MFNET_CLASSES, MFNET_PALETTE

CLASS_NAMES = MFNET_CLASSES
PALETTE = MFNET_PALETTE

UNLABELED, CAR, PERSON, BIKE, CURVE, CAR_STOP, GUARDRAIL, COLOR_CONE, BUMP = range(9)

SPLITS = ("train", "val", "test", "test_day", "test_night")
# test_day / test_night are the day / night subsets of test, as on MFNet.
_BASE_SPLIT = {"train": "train", "val": "val", "test": "test", "test_day": "test", "test_night": "test"}
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

DEFAULT_SIZE = (96, 128)

# Thermal middle ground (see the module docstring for the reasoning).
COUNTS_PER_KELVIN = 3.0
SUN_RANGE = (0.3, 1.0)  # per day scene: overcast / low sun .. clear midday
# material: ((day, full sun), (night)) apparent-temperature offset ranges from asphalt, kelvin
PASSIVE_CONTRAST_K = {
    "white_paint": ((-5.0, -3.0), (-0.8, 0.4)),
    "yellow_paint": ((-3.0, -1.5), (-0.8, 0.4)),
    "rubber_black": ((1.0, 3.0), (-1.5, -0.5)),
    "rubber_yellow": ((-1.5, 0.0), (-1.5, -0.5)),
    "concrete": ((-3.5, -1.5), (-1.0, -0.3)),
    "plastic_cone": ((-6.0, -2.0), (-2.0, -0.5)),
}

_CAR_COLORS = np.array(
    [
        (200, 30, 30),
        (30, 60, 160),
        (235, 235, 235),
        (25, 25, 28),
        (150, 150, 155),
        (90, 90, 95),
        (30, 110, 60),
        (210, 175, 40),
        (120, 20, 40),
        (60, 130, 190),
    ],
    np.float32,
)
_SKIN = np.array([(235, 200, 170), (200, 150, 110), (140, 95, 60), (90, 60, 40)], np.float32)


def _rng_for(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_IDS[_BASE_SPLIT[split]], int(index)])


def is_night_sample(index: int, split: str = "train", seed: int = 0, night_fraction: float = 0.5) -> bool:
    """Whether scene `index` is a night scene (cheap: the first draw of its RNG)."""
    return bool(_rng_for(seed, split, index).random() < night_fraction)


def generate_sample(
    index: int,
    split: str = "train",
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    night_fraction: float = 0.5,
) -> dict:
    """Return one numpy sample dict (eo RGB uint8 HxWx3, ir uint8 HxW, label int64 HxW, name, is_night).

    `split` may be train, val, test, test_day or test_night; the last two index
    into test's scenes (use `SyntheticScenes` for the filtered index lists).
    """
    if split not in _BASE_SPLIT:
        raise ValueError(f"unknown synthetic split {split!r}; expected one of {SPLITS}")
    height, width = (int(v) for v in size)
    if height < 16 or width < 16:
        raise ValueError(f"synthetic size must be at least 16x16, got {height}x{width}")
    if index < 0:
        raise ValueError(f"sample index must be >= 0, got {index}")
    rng = _rng_for(seed, split, index)
    night = bool(rng.random() < night_fraction)  # first draw: see is_night_sample
    eo, ir, label = _Scene(rng, height, width, night).render()
    name = f"syn_{_BASE_SPLIT[split]}_{int(index):05d}{'N' if night else 'D'}"
    return {"eo": eo, "ir": ir, "label": label.astype(np.int64), "name": name, "is_night": night}


class SyntheticScenes:
    """Index -> numpy sample for one split; the source behind build_dataset("synthetic")."""

    class_names = CLASS_NAMES
    palette = [list(c) for c in PALETTE]

    def __init__(
        self,
        split: str,
        num: int,
        seed: int = 0,
        size: tuple[int, int] = DEFAULT_SIZE,
        night_fraction: float = 0.5,
    ) -> None:
        if split not in _BASE_SPLIT:
            raise ValueError(f"unknown synthetic split {split!r}; expected one of {SPLITS}")
        if num < 0:
            raise ValueError(f"number of synthetic samples must be >= 0, got {num}")
        if not 0.0 <= night_fraction <= 1.0:
            raise ValueError(f"night_fraction must be in [0, 1], got {night_fraction}")
        self.split, self.seed, self.size, self.night_fraction = split, int(seed), tuple(size), float(night_fraction)
        indices = range(int(num))
        if split in ("test_day", "test_night"):
            want_night = split == "test_night"
            indices = [i for i in indices if is_night_sample(i, split, seed, night_fraction) == want_night]
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, i: int) -> dict:
        return generate_sample(self.indices[i], self.split, self.seed, self.size, self.night_fraction)


# --------------------------------------------------------------------------- drawing


_NOISE_BANK: np.ndarray | None = None
_NOISE_BANK_SHAPE = (256, 320)


def _gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian noise of `shape` (HxW or HxWxC), float32.

    Drawing fresh normals costs ~0.5 ms per 96x128x3 frame, a tenth of the
    whole sample budget, so small frames take random windows of a fixed,
    seeded bank instead (still a pure function of the sample's RNG).
    """
    global _NOISE_BANK
    height, width = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    bank_h, bank_w = _NOISE_BANK_SHAPE
    if height > bank_h or width > bank_w:
        return rng.standard_normal(shape, dtype=np.float32)
    if _NOISE_BANK is None:
        _NOISE_BANK = np.random.default_rng(20231204).standard_normal(_NOISE_BANK_SHAPE, dtype=np.float32)
    oy = rng.integers(0, bank_h - height + 1, channels)
    ox = rng.integers(0, bank_w - width + 1, channels)
    planes = [_NOISE_BANK[y : y + height, x : x + width] for y, x in zip(oy, ox)]
    return np.stack(planes, axis=-1) if len(shape) == 3 else planes[0].copy()


def _pts(points) -> np.ndarray:
    return np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)


class _Scene:
    """One scene: object specs first, then ground, shadows, objects far to near."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, night: bool) -> None:
        self.rng, self.H, self.W, self.night = rng, height, width, night
        self.eo = np.zeros((height, width, 3), np.float32)
        self.ir = np.zeros((height, width), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        self.lights: list = []  # self-luminous primitives, re-drawn after night darkening
        self.lamps: list = []  # (x, y, radius) of light pools at night

    # -- primitive helpers: every shape goes to EO, IR and label together (same pixels)
    def poly(self, points, eo=None, ir=None, cls=None) -> None:
        p = [_pts(points)]
        if eo is not None:
            cv2.fillPoly(self.eo, p, tuple(float(c) for c in eo))
        if ir is not None:
            cv2.fillPoly(self.ir, p, float(ir))
        if cls is not None:
            cv2.fillPoly(self.label, p, int(cls))

    def rect(self, x0, y0, x1, y1, eo=None, ir=None, cls=None) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], eo, ir, cls)

    def line(self, p0, p1, thickness, eo=None, ir=None, cls=None) -> None:
        a, b, t = tuple(int(round(v)) for v in p0), tuple(int(round(v)) for v in p1), max(1, int(round(thickness)))
        if eo is not None:
            cv2.line(self.eo, a, b, tuple(float(c) for c in eo), t)
        if ir is not None:
            cv2.line(self.ir, a, b, float(ir), t)
        if cls is not None:
            cv2.line(self.label, a, b, int(cls), t)

    def circle(self, center, radius, thickness=-1, eo=None, ir=None, cls=None) -> None:
        c, r = tuple(int(round(v)) for v in center), max(1, int(round(radius)))
        t = -1 if thickness < 0 else max(1, int(round(thickness)))
        if eo is not None:
            cv2.circle(self.eo, c, r, tuple(float(v) for v in eo), t)
        if ir is not None:
            cv2.circle(self.ir, c, r, float(ir), t)
        if cls is not None:
            cv2.circle(self.label, c, r, int(cls), t)

    def u(self, low: float, high: float) -> float:
        return low + (high - low) * self.rng.random()  # 3x cheaper than rng.uniform for scalars

    def passive_ir(self, material: str) -> float:
        """IR level of a passive object of `material` on this scene's asphalt (one draw per object)."""
        day, night = PASSIVE_CONTRAST_K[material]
        dt = self.u(*night) if self.night else self.sun * self.u(*day)
        return self.t_road + COUNTS_PER_KELVIN * dt

    # -- scene layout
    def depth(self, y: float) -> float:
        """Pixel scale at ground row y (0 at the horizon)."""
        return max(0.0, y - self.horizon)

    def road_x(self, y: float) -> tuple[float, float]:
        t = (y - self.horizon) / (self.H - self.horizon)
        return self.vx + (self.road_left - self.vx) * t, self.vx + (self.road_right - self.vx) * t

    def ground_row(self, near: float, far: float) -> float:
        """A ground row between fractions `far`..`near` of the ground height (0 = horizon)."""
        return self.horizon + (self.H - self.horizon) * self.u(far, near)

    def render(self):
        H, W = self.H, self.W
        self.horizon = H * self.u(0.36, 0.5)
        self.vx = W * self.u(0.3, 0.7)
        self.road_left = self.vx - W * self.u(0.55, 1.0)
        self.road_right = self.vx + W * self.u(0.55, 1.0)
        self.t_road = self.u(55, 75)
        self.sun = 0.0 if self.night else self.u(*SUN_RANGE)

        self._background()
        ground, standing, shadows = self._plan_objects()
        for draw in ground:
            draw()
        if not self.night:
            shade = np.ones((H, W), np.float32)
            for cx, cy, ax, ay in shadows:
                cv2.ellipse(shade, (int(cx), int(cy)), (max(1, int(ax)), max(1, int(ay))), 0, 0, 360, 0.55, -1)
            self.eo *= shade[..., None]
        for _, draw in sorted(standing, key=lambda s: s[0]):
            draw()
        return self._finish()

    def _background(self) -> None:
        H, W, hz = self.H, self.W, int(round(self.horizon))
        # sky: gradient, cold in IR
        t = np.linspace(0.0, 1.0, hz, dtype=np.float32)[:, None]
        if self.night:
            top, bottom = np.array([10, 12, 30], np.float32), np.array([35, 35, 55], np.float32)
        else:
            top = np.array([self.u(70, 130), self.u(130, 180), self.u(200, 245)], np.float32)
            bottom = np.array([self.u(180, 220), self.u(200, 230), self.u(225, 250)], np.float32)
        self.eo[:hz] = (top + (bottom - top) * t)[:, None, :]
        self.ir[:hz] = (self.u(20, 32) + self.u(5, 15) * t)
        # ground: sidewalk everywhere, road trapezoid on it
        side = self.u(140, 185)
        self.eo[hz:] = (side, side * self.u(0.95, 1.0), side * self.u(0.85, 0.95))
        self.ir[hz:] = self.t_road + self.u(-4, 4)
        road = self.u(75, 115)
        top_w = W * 0.02
        self.poly(
            [(self.vx - top_w, self.horizon), (self.vx + top_w, self.horizon), (self.road_right, H),
             (self.road_left, H)],
            eo=(road, road, road * self.u(1.0, 1.06)),
            ir=self.t_road,
        )
        # buildings and trees on the horizon (class 0, warm-ish walls)
        x = -self.u(0, 0.1) * W
        while x < W:
            bw = W * self.u(0.08, 0.3)
            top_y = self.horizon * self.u(0.05, 0.75)
            base = self.u(70, 190)
            col = (base * self.u(0.85, 1.1), base * self.u(0.85, 1.0), base * self.u(0.75, 1.0))
            if self.rng.random() < 0.25:  # a tree instead of a building
                g = self.u(40, 90)
                cx, ry = x + bw / 2, (self.horizon - top_y) * 0.6
                cv2.ellipse(self.eo, (int(cx), int(self.horizon - ry)), (max(1, int(bw / 2)), max(1, int(ry))),
                            0, 0, 360, (g * 0.5, g, g * 0.4), -1)
                cv2.ellipse(self.ir, (int(cx), int(self.horizon - ry)), (max(1, int(bw / 2)), max(1, int(ry))),
                            0, 0, 360, self.u(40, 55), -1)
            else:
                t_wall = self.u(60, 95)
                self.rect(x, top_y, x + bw, self.horizon, eo=col, ir=t_wall)
                win = max(2.0, bw / 6)
                lit = self.night and self.rng.random() < 0.5
                wy = np.arange(top_y + win, self.horizon - win, 2 * win)
                wx = np.arange(x + win * 0.7, x + bw - win, 2 * win)
                if wy.size and wx.size:
                    gy, gx = (g.ravel() for g in np.meshgrid(wy, wx, indexing="ij"))
                    quads = np.stack(
                        [gx, gy, gx + win * 0.8, gy, gx + win * 0.8, gy + win * 0.8, gx, gy + win * 0.8], 1
                    )
                    quads = list(np.round(quads).astype(np.int32).reshape(-1, 4, 1, 2))
                    on = (self.rng.random(len(quads)) < 0.4) if lit else np.zeros(len(quads), bool)
                    dark = [q for q, o in zip(quads, on) if not o]
                    bright = [q for q, o in zip(quads, on) if o]
                    for group, wcol in (
                        (dark, (col[0] * 0.5, col[1] * 0.55, col[2] * 0.65)),
                        (bright, (255.0, 220.0, 150.0)),
                    ):
                        if group:
                            cv2.fillPoly(self.eo, group, wcol)
                            cv2.fillPoly(self.ir, group, t_wall + 6)
                    if bright:
                        self.lights.append(("polys", bright, (255, 220, 150)))
            x += bw
        # street lamps on the road sides (class 0); at night they light pools
        for _ in range(int(self.rng.integers(0, 3))):
            y = self.ground_row(0.9, 0.3)
            left, right = self.road_x(y)
            px = left - 2 if self.rng.random() < 0.5 else right + 2
            d = self.depth(y)
            self.line((px, y), (px, y - 3.0 * d), max(1.0, 0.05 * d), eo=(60, 60, 65), ir=self.t_road - 5)
            self.circle((px, y - 3.0 * d), max(1.0, 0.1 * d), eo=(200, 200, 190), ir=self.t_road + 10)
            self.lights.append(("circle", ((px, y - 3.0 * d), max(1.0, 0.1 * d)), (255, 240, 200)))
            self.lamps.append((px, y, 1.8 * d))

    def _plan_objects(self):
        """Decide the scene's objects; return ground-paint drawers, (row, drawer) for standing ones, car shadows."""
        rng = self.rng
        ground, standing, shadows = [], [], []
        if rng.random() < 0.6:
            for _ in range(int(rng.integers(1, 3))):
                ground.append(self._curve)
        if rng.random() < 0.45:
            ground.append(self._bump)
        if rng.random() < 0.55:
            if rng.random() < 0.3:
                ground.append(self._stop_bar)
            else:
                for _ in range(int(rng.integers(1, 3))):
                    y = self.ground_row(0.95, 0.2)
                    standing.append((y, lambda y=y: self._parking_block(y)))
        if rng.random() < 0.5:
            standing.append((-1.0, self._guardrail))  # spans all depths: drawn first
        n_cars = int(rng.choice([0, 1, 1, 2, 2, 3]))
        for _ in range(n_cars):
            y = self.ground_row(0.8, 0.12)
            side = rng.random() < 0.5
            d = self.depth(y)
            h = d * self.u(0.9, 1.05)
            w = h * (self.u(2.2, 2.7) if side else self.u(1.1, 1.25))
            left, right = self.road_x(y)
            x0 = self.u(left - 0.3 * w, right - 0.7 * w)
            shadows.append((x0 + w / 2, y, w * 0.55, max(1.0, 0.12 * d)))
            standing.append((y, lambda y=y, x0=x0, w=w, h=h, side=side: self._car(y, x0, w, h, side)))
        n_persons = int(rng.choice([0, 1, 1, 2, 2, 3]))
        for _ in range(n_persons):
            y = self.ground_row(0.95, 0.15)
            left, right = self.road_x(y)
            x = self.u(max(left, -0.05 * self.W), min(right, 1.05 * self.W))
            standing.append((y, lambda y=y, x=x: self._person(y, x)))
        if rng.random() < 0.45:
            for _ in range(int(rng.integers(1, 3))):
                y = self.ground_row(0.9, 0.2)
                left, right = self.road_x(y)
                x = self.u(max(left, 0.0), min(right, self.W))
                standing.append((y, lambda y=y, x=x: self._bike(y, x)))
        if rng.random() < 0.55:
            y = self.ground_row(0.9, 0.15)
            left, right = self.road_x(y)
            x = self.u(max(left, 0.0), min(right, self.W))
            step = self.depth(y) * self.u(0.6, 1.2) * (1 if rng.random() < 0.5 else -1)
            for k in range(int(rng.integers(1, 5))):
                standing.append((y, lambda y=y, x=x + k * step: self._cone(y, x)))
        return ground, standing, shadows

    # -- painted / passive objects: IR = road + the thermal middle ground (passive_ir)
    def _curve(self) -> None:
        H = self.H
        y_far = self.horizon + (H - self.horizon) * self.u(0.08, 0.3)
        left, right = self.road_x(H)
        x_near = self.u(max(left, -0.2 * self.W), min(right, 1.2 * self.W))
        fl, fr = self.road_x(y_far)
        x_far = self.u(fl, fr)
        bend = self.W * self.u(0.15, 0.45) * (1 if self.rng.random() < 0.5 else -1)
        p0, p2 = np.array([x_near, H + 2.0]), np.array([x_far, y_far])
        p1 = (p0 + p2) / 2 + np.array([bend, 0.0])
        white = self.rng.random() < 0.6
        col = (self.u(215, 245),) * 3 if white else (self.u(220, 245), self.u(180, 210), self.u(20, 60))
        t_ir = self.passive_ir("white_paint" if white else "yellow_paint")
        ts = np.linspace(0.0, 1.0, 14)
        pts = [(1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2 for t in ts]
        for a, b in zip(pts[:-1], pts[1:]):
            self.line(a, b, 1.5 + 0.08 * self.depth((a[1] + b[1]) / 2), eo=col, ir=t_ir, cls=CURVE)

    def _bump(self) -> None:
        y = self.ground_row(0.9, 0.25)
        d = self.depth(y)
        thick = max(3.0, 0.15 * d)
        left, right = self.road_x(y)
        stripe = max(3.0, 0.25 * d)
        x, k = left, int(self.rng.integers(0, 2))
        yellow = (self.u(220, 250), self.u(180, 215), self.u(10, 50))
        black = (self.u(15, 40),) * 3
        t_yellow, t_black = self.passive_ir("rubber_yellow"), self.passive_ir("rubber_black")
        while x < right:
            even = k % 2 == 0
            self.rect(x, y - thick, min(x + stripe, right), y, eo=yellow if even else black,
                      ir=t_yellow if even else t_black, cls=BUMP)
            x, k = x + stripe, k + 1

    def _stop_bar(self) -> None:
        y = self.ground_row(0.9, 0.3)
        d = self.depth(y)
        left, right = self.road_x(y)
        x0 = self.u(left, (left + right) / 2)
        x1 = min(right, x0 + (right - left) * self.u(0.35, 0.6))
        self.rect(x0, y - max(2.0, 0.1 * d), x1, y, eo=(self.u(220, 245),) * 3, ir=self.passive_ir("white_paint"),
                  cls=CAR_STOP)

    def _parking_block(self, y: float) -> None:
        d = self.depth(y)
        left, right = self.road_x(y)
        w = 1.4 * d * self.u(0.8, 1.2)
        x0 = self.u(left, right - w)
        h = max(3.0, 0.18 * d)
        col = ((self.u(215, 245), self.u(185, 210), self.u(20, 60)) if self.rng.random() < 0.5
               else (self.u(165, 200),) * 3)
        t_ir = self.passive_ir("concrete")
        self.rect(x0, y - h, x0 + w, y, eo=col, ir=t_ir, cls=CAR_STOP)
        self.rect(x0, y - h, x0 + w, y - h * 0.6, eo=tuple(min(255.0, c * 1.15) for c in col), ir=t_ir, cls=CAR_STOP)

    def _cone(self, y: float, x: float) -> None:
        d = self.depth(y)
        h = 0.55 * d * self.u(0.9, 1.1)
        b = 0.21 * d
        t_ir = self.passive_ir("plastic_cone")
        orange = (self.u(235, 255), self.u(85, 130), self.u(10, 40))
        self.rect(x - 1.3 * b, y - max(1.0, 0.08 * d), x + 1.3 * b, y, eo=(40, 30, 25), ir=t_ir, cls=COLOR_CONE)
        self.poly([(x - b, y), (x + b, y), (x + 0.2 * b, y - h), (x - 0.2 * b, y - h)], eo=orange, ir=t_ir,
                  cls=COLOR_CONE)
        ya, yb = y - 0.45 * h, y - 0.65 * h
        self.poly(
            [(x - 0.75 * b, ya), (x + 0.75 * b, ya), (x + 0.55 * b, yb), (x - 0.55 * b, yb)],
            eo=(240, 240, 240),
            ir=t_ir,
            cls=COLOR_CONE,
        )

    def _guardrail(self) -> None:
        H = self.H
        left_side = self.rng.random() < 0.5
        y_near, y_far = H * 1.05, self.horizon + (H - self.horizon) * self.u(0.04, 0.15)
        edge = ((lambda y: self.road_x(y)[0] - 0.1 * self.depth(y)) if left_side
                else (lambda y: self.road_x(y)[1] + 0.1 * self.depth(y)))
        metal = self.u(140, 185)
        col = (metal, metal, metal * self.u(1.0, 1.08))
        t_ir = self.t_road - self.u(6, 12)
        # posts, geometrically spaced so that they look evenly spaced on the ground
        y = y_far
        while y < y_near:
            d = self.depth(y)
            self.line((edge(y), y), (edge(y), y - 0.55 * d), max(1.0, 0.06 * d), eo=(metal * 0.6,) * 3, ir=t_ir,
                      cls=GUARDRAIL)
            y += max(2.0, 0.35 * d)
        top = [(edge(y_far), y_far - 0.55 * self.depth(y_far)), (edge(y_near), y_near - 0.55 * self.depth(y_near))]
        bottom = [(edge(y_near), y_near - 0.25 * self.depth(y_near)), (edge(y_far), y_far - 0.25 * self.depth(y_far))]
        self.poly(top + bottom, eo=col, ir=t_ir, cls=GUARDRAIL)
        mid = [(edge(y_far), y_far - 0.42 * self.depth(y_far)), (edge(y_near), y_near - 0.42 * self.depth(y_near))]
        self.line(mid[0], mid[1], max(1.0, 0.03 * self.depth(H)), eo=(min(255.0, metal * 1.3),) * 3)

    # -- warm objects
    def _car(self, y: float, x0: float, w: float, h: float, side: bool) -> None:
        rng = self.rng
        body = _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))] * self.u(0.85, 1.1)
        glass = (self.u(30, 60), self.u(40, 70), self.u(60, 90))
        t_body = self.t_road + self.u(25, 45)
        t_hot = self.t_road + self.u(55, 85)
        t_glass = self.t_road + self.u(0, 8)
        if side:
            facing_right = rng.random() < 0.5
            self.poly([(x0, y - 0.12 * h), (x0 + w, y - 0.12 * h), (x0 + w, y - 0.55 * h), (x0, y - 0.55 * h)],
                      eo=body, ir=t_body, cls=CAR)
            self.poly(
                [(x0 + 0.18 * w, y - 0.55 * h), (x0 + 0.3 * w, y - h), (x0 + 0.72 * w, y - h),
                 (x0 + 0.86 * w, y - 0.55 * h)],
                eo=body,
                ir=t_body,
                cls=CAR,
            )
            self.poly(
                [(x0 + 0.24 * w, y - 0.58 * h), (x0 + 0.33 * w, y - 0.92 * h), (x0 + 0.69 * w, y - 0.92 * h),
                 (x0 + 0.8 * w, y - 0.58 * h)],
                eo=glass,
                ir=t_glass,
                cls=CAR,
            )
            hood = (x0 + 0.72 * w, x0 + w) if facing_right else (x0, x0 + 0.28 * w)
            self.rect(hood[0], y - 0.5 * h, hood[1], y - 0.15 * h, ir=t_hot)  # warm engine bay: IR only
            for cx in (x0 + 0.2 * w, x0 + 0.8 * w):
                self.circle((cx, y - 0.17 * h), 0.17 * h, eo=(20, 20, 22), ir=t_hot + self.u(0, 10), cls=CAR)
                self.circle((cx, y - 0.17 * h), 0.07 * h, eo=(150, 150, 150), ir=t_hot, cls=CAR)
            if self.night and rng.random() < 0.8:
                hx = x0 + w - 0.03 * w if facing_right else x0 + 0.03 * w
                self.lights.append(("circle", ((hx, y - 0.42 * h), max(1.0, 0.08 * h)), (255, 250, 220)))
                self.lamps.append((hx + (0.6 if facing_right else -0.6) * w, y, 0.5 * w))
        else:
            self.rect(x0 + 0.05 * w, y - 0.2 * h, x0 + 0.95 * w, y, eo=(20, 20, 22), ir=t_hot, cls=CAR)  # tyres
            self.rect(x0, y - 0.62 * h, x0 + w, y - 0.15 * h, eo=body, ir=t_body, cls=CAR)
            self.poly(
                [(x0 + 0.08 * w, y - 0.62 * h), (x0 + 0.2 * w, y - h), (x0 + 0.8 * w, y - h),
                 (x0 + 0.92 * w, y - 0.62 * h)],
                eo=body,
                ir=t_body,
                cls=CAR,
            )
            self.poly(
                [(x0 + 0.15 * w, y - 0.65 * h), (x0 + 0.24 * w, y - 0.93 * h), (x0 + 0.76 * w, y - 0.93 * h),
                 (x0 + 0.85 * w, y - 0.65 * h)],
                eo=glass,
                ir=t_glass,
                cls=CAR,
            )
            red = (self.u(180, 230), 20, 25)
            for lx in (x0 + 0.03 * w, x0 + 0.82 * w):
                self.rect(lx, y - 0.55 * h, lx + 0.15 * w, y - 0.42 * h, eo=red, ir=t_body + 5, cls=CAR)
                if self.night:
                    self.lights.append(("rect", (lx, y - 0.55 * h, lx + 0.15 * w, y - 0.42 * h), (255, 40, 40)))
            self.rect(x0 + 0.3 * w, y - 0.3 * h, x0 + 0.7 * w, y - 0.2 * h, eo=(body * 0.6), ir=t_body, cls=CAR)
            self.circle((x0 + 0.2 * w, y - 0.16 * h), max(1.0, 0.05 * h), ir=t_hot + 20)  # exhaust

    def _person(self, y: float, x: float, riding: bool = False) -> None:
        d = self.depth(y)
        h = 1.13 * d * self.u(0.88, 1.05)
        shirt = self.rng.integers(15, 235, 3).astype(np.float32)
        pants = (self.rng.integers(10, 120, 3).astype(np.float32) if self.rng.random() < 0.7
                 else self.rng.integers(10, 235, 3).astype(np.float32))
        skin = _SKIN[int(self.rng.integers(len(_SKIN)))]
        t_cloth, t_skin = self.u(185, 215), self.u(225, 245)
        lw = max(1.0, 0.09 * h)
        hip = (x, y - 0.47 * h)
        if not riding:
            stride = 0.12 * h * self.u(-1, 1)
            for foot in ((x - stride, y), (x + stride * 0.8, y)):
                self.line(hip, foot, lw, eo=pants, ir=t_cloth - 10, cls=PERSON)
        self.rect(x - 0.13 * h, y - 0.82 * h, x + 0.13 * h, y - 0.45 * h, eo=shirt, ir=t_cloth, cls=PERSON)
        swing = 0.1 * h * self.u(-1, 1)
        for sx in (-1, 1):
            self.line((x + sx * 0.13 * h, y - 0.8 * h), (x + sx * 0.16 * h + swing * sx, y - 0.5 * h), lw * 0.8,
                      eo=shirt, ir=t_cloth, cls=PERSON)
        self.circle((x, y - 0.89 * h), 0.075 * h, eo=skin, ir=t_skin, cls=PERSON)
        if self.rng.random() < 0.4:  # hair / cap
            self.rect(x - 0.075 * h, y - 0.97 * h, x + 0.075 * h, y - 0.92 * h, eo=(30, 25, 20), ir=t_cloth, cls=PERSON)

    def _bike(self, y: float, x: float) -> None:
        d = self.depth(y)
        r = 0.22 * d
        base = 0.7 * d
        t = max(1.0, 0.07 * d)
        frame = self.rng.integers(30, 230, 3).astype(np.float32)
        t_ir = self.t_road + self.u(14, 24)
        rear, front = (x - base / 2, y - r), (x + base / 2, y - r)
        if self.rng.random() < 0.5:
            rear, front = front, rear
        for c in (rear, front):
            self.circle(c, r, t, eo=(25, 25, 25), ir=t_ir, cls=BIKE)
        crank = (x, y - r)
        seat = (rear[0] + (front[0] - rear[0]) * 0.3, y - 2.1 * r)
        head = (rear[0] + (front[0] - rear[0]) * 0.85, y - 2.25 * r)
        for a, b in ((rear, crank), (rear, seat), (seat, crank), (crank, head), (seat, head), (head, front)):
            self.line(a, b, t, eo=frame, ir=t_ir, cls=BIKE)
        self.line(head, (head[0], head[1] - 0.3 * r), t, eo=(30, 30, 30), ir=t_ir, cls=BIKE)
        if self.rng.random() < 0.6:  # a rider: person class, drawn over the bike
            self._person(seat[1] + 0.47 * 1.13 * d, seat[0] + 0.1 * (head[0] - seat[0]), riding=True)
            self.line(seat, crank, max(1.0, 0.09 * 1.13 * d), eo=(40, 40, 60), ir=self.u(175, 200), cls=PERSON)

    # -- sensor models
    def _finish(self):
        H, W, rng = self.H, self.W, self.rng
        # low-frequency texture / illumination variation
        lf = cv2.resize(rng.standard_normal((6, 8)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
        eo = self.eo * (1.0 + 0.06 * lf)[..., None]
        ir = self.ir + 2.0 * lf
        if self.night:
            gain = np.full((H, W), self.u(0.1, 0.3), np.float32)
            yy, xx = np.arange(H, dtype=np.float32)[:, None], np.arange(W, dtype=np.float32)[None, :]
            for lx, ly, radius in self.lamps:
                radius = max(radius, 2.0)
                gain += 0.5 * np.exp(-(((xx - lx) / radius) ** 2 + ((yy - ly) / (0.5 * radius)) ** 2))
            tint = (np.array([1.0, 0.92, 0.8], np.float32) if rng.random() < 0.5
                    else np.array([0.85, 0.9, 1.0], np.float32))
            eo = eo * np.minimum(gain, 1.0)[..., None] * tint
            for kind, geo, col in self.lights:  # lights are self-luminous: not darkened
                if kind == "polys":
                    cv2.fillPoly(eo, geo, col)
                elif kind == "rect":
                    cv2.rectangle(eo, (int(geo[0]), int(geo[1])), (int(geo[2]), int(geo[3])), col, -1)
                else:
                    cv2.circle(eo, tuple(int(v) for v in geo[0]), int(geo[1]), col, -1)
            noise = self.u(4.0, 8.0)
        else:
            eo = eo * self.u(0.8, 1.15)
            noise = self.u(1.5, 3.0)
        eo = cv2.GaussianBlur(eo, (3, 3), 0.6)
        eo += _gaussian_noise(rng, eo.shape) * noise
        ir = cv2.GaussianBlur(ir, (3, 3), 0.8)
        ir += _gaussian_noise(rng, ir.shape) * self.u(1.5, 3.0)
        eo8 = np.clip(eo, 0, 255).astype(np.uint8)
        ir8 = np.clip(ir, 0, 255).astype(np.uint8)
        return eo8, ir8, self.label
