"""EO modality health and the fused / IR-only / no-input decision (DESIGN contract 5).

Pure Python + numpy: no ROS, no clock of its own. Every call takes the time as
float seconds, so tests drive it with synthetic timestamps and the node with
its clock (use ONE time base for all calls, e.g. the node clock at receipt:
staleness compares ``now`` with the times given to ``observe_*``).

Rules
  * EO is unhealthy when stale, dark, saturated, frozen (the same picture
    repeated) or invalid (undecodable message).
  * Stale: no frame for the stream's stale limit = max(timeout, ``stale_periods``
    x the stream's frame period) -- ``eo_timeout_s`` / ``ir_timeout_s`` and the
    periods given to ``set_periods`` (the node estimates them from the stamps,
    csk_ros/logic/stream_loss.py). Both must pass, so a lossy but alive stream does not
    go stale: with random loss p a live stream shows k missing frames in a row
    with probability p**k per frame, and k = 10 keeps that below 1e-5 at 30 %
    loss (0.3**10 = 6e-6: less than once an hour at 30 Hz). At 30 Hz the
    timeout (0.5 s = 15 periods) decides; at 10 Hz the periods (1.0 s) do.
    Without a period estimate the timeout alone applies.
  * A fault switches to IR-only immediately (dark / saturated need
    ``dark_frames`` / ``saturated_frames`` consecutive bad frames to count as a
    fault, frozen needs ``frozen_frames`` identical frames in a row; stale and
    invalid trip at once). Startup counts as a fault: EO must first prove itself.
  * Back to fused only after ``recover_frames`` consecutive clean EO frames;
    any bad frame (dark, saturated, repeated, invalid) or a stale gap restarts
    the count (hysteresis).
  * IR stale (or never seen) -> ``no_input``: no mask can be produced.
  * Time going backwards by more than ``clock_jump_tolerance_s`` in any one of
    the three time series (EO times, IR times, decision times) -- a bag loop or
    a sim-time reset -- clears all state (``reset``) and counts it in
    ``clock_resets``, so the monitor can never wedge on old timestamps. Each
    series is checked against itself, so a constant offset between the clock
    that stamps frames and the decision clock does not trigger resets.

Reasons (stable strings, usable as diagnostics keys): see REASONS.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from csk_ros.logic.clock import jumped_back
from csk_ros.logic.modes import HEALTH_REASONS

MODES = ("fused", "ir_only", "no_input")
#: Float tolerance of the timeout boundaries: "stale at exactly eo_timeout_s"
#: holds within 1 us (float seconds of an epoch time resolve ~0.24 us).
TIME_EPS = 1e-6
REASONS = tuple(r.value for r in HEALTH_REASONS)  # the monitor's reasons; csk_ros/logic/modes.py is their home


@dataclass
class HealthParams:
    """Thresholds of the EO health monitor.

    The luminance defaults were chosen with ``benchmarks/health_thresholds.py``
    on the 20 real MSRS frames (640x480; 8 day, 12 night). Day frames: mean
    luma 71.3..123.8, >= 42 % of pixels at luma >= 64, <= 11.9 % at >= 250.
    Night frames: mean luma 13.6..45.1 and every one carries information
    (street lights, lit windows, headlights): >= 1.57 % of pixels at >= 64.
    "dark = mean < 12 AND fewer than 0.2 % of pixels >= 64" trips on none of
    them (the darkest night frame is above the mean limit AND has 8x the bright
    fraction); a day frame faded by x0.5, x0.25, ... trips at x1/16 (6 of 8,
    mean ~6..8) or x1/8 (2 of 8, mean 9..11); night frames trip at x1/4 or
    x1/8. Saturated = more than 90 % of pixels >= 250: day frames brightened
    trip at x8 (1), x16 (6) or x32 (1). Dark / saturated need 3 consecutive
    frames; frozen 5 identical pictures in a row; recovery 10 clean frames.
    """

    #: EO is stale when no EO frame was observed for this long (s); boundary inclusive.
    eo_timeout_s: float = 0.5
    #: IR is stale (mode no_input) when no IR frame was observed for this long (s).
    ir_timeout_s: float = 0.5
    #: ... and, both streams, for at least this many of its frame periods (see the module docstring).
    stale_periods: int = 10
    #: A frame is dark only when its mean luma (0..255) is below this ...
    dark_luma_mean: float = 12.0
    #: ... AND fewer than `dark_bright_fraction` of its pixels reach `dark_bright_level`
    #: (a night frame with street lights / lit areas keeps carrying information).
    dark_bright_level: int = 64
    dark_bright_fraction: float = 0.002
    #: consecutive dark frames before EO counts as dark.
    dark_frames: int = 3
    #: A frame is saturated when more than `saturated_fraction` of its pixels have
    #: luma >= `saturated_level`.
    saturated_level: int = 250
    saturated_fraction: float = 0.9
    #: consecutive saturated frames before EO counts as saturated.
    saturated_frames: int = 3
    #: EO counts as frozen when the same picture arrives this many times in a row
    #: (>= 2; 0 disables the check, e.g. for a noise-free simulated camera).
    #: "Same": mean absolute luma difference to the previous frame, on the
    #: downsampled signature, <= `frozen_max_mean_abs_diff` (0..255 levels). A real
    #: camera's noise on a static scene gives ~1 level or more; an exact duplicate 0.
    frozen_frames: int = 5
    frozen_max_mean_abs_diff: float = 0.1
    #: consecutive clean EO frames needed to go (back) to fused.
    recover_frames: int = 10
    #: statistics use every `stride`-th pixel in each axis (4 -> 120x160 at 640x480).
    stride: int = 4
    #: time going back by more than this (s) within one time series resets the monitor.
    clock_jump_tolerance_s: float = 1.0

    def validate(self) -> "HealthParams":
        """Raise ValueError naming the bad parameter; return self for chaining. The bounds are
        HEALTH_LIMITS, the table the node's parameter descriptors are made from too."""
        for f in fields(self):
            v = getattr(self, f.name)
            lo, hi = HEALTH_LIMITS[f.name]
            integer = isinstance(f.default, int)
            if integer and (not isinstance(v, int) or isinstance(v, bool)):
                raise ValueError(f"health parameter {f.name} must be an integer in [{lo}, {hi}], got {v!r}")
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi:
                kind = "an integer" if integer else "a finite number"
                raise ValueError(f"health parameter {f.name} must be {kind} in [{lo}, {hi}], got {v!r}")
        if self.frozen_frames == 1:
            raise ValueError("health parameter frozen_frames must be 0 (disabled) or >= 2, got 1")
        return self

    @classmethod
    def from_dict(cls, values: dict | None) -> "HealthParams":
        """Build from a config mapping and validate; unknown keys are an error."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown health parameter(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values).validate()

    def to_dict(self) -> dict:
        return asdict(self)


#: The one table of health parameter bounds (inclusive): HealthParams.validate checks them and the
#: node's parameter table (csk_ros/logic/config.py) declares them to ROS from here.
HEALTH_LIMITS = {
    "eo_timeout_s": (0.01, 60.0), "ir_timeout_s": (0.01, 60.0), "stale_periods": (1, 1000),
    "dark_luma_mean": (0.0, 255.0), "dark_bright_level": (0, 255), "dark_bright_fraction": (0.0, 1.0),
    "dark_frames": (1, 1000), "saturated_level": (0, 255), "saturated_fraction": (0.0, 1.0),
    "saturated_frames": (1, 1000), "frozen_frames": (0, 1000), "frozen_max_mean_abs_diff": (0.0, 255.0),
    "recover_frames": (1, 10000), "stride": (1, 64), "clock_jump_tolerance_s": (0.0, 3600.0),
}


@dataclass(frozen=True)
class FrameStats:
    """Luminance statistics of one EO frame (on the strided sample)."""

    mean_luma: float
    p99_luma: int
    bright_fraction: float  # luma >= dark_bright_level
    saturated_fraction: float  # luma >= saturated_level
    mean_abs_diff: float | None  # vs the previous EO frame's signature; None if none
    dark: bool
    saturated: bool
    repeated: bool  # same picture as the previous frame


@dataclass(frozen=True)
class EoFrameVerdict:
    """What one EO frame did to the monitor.

    healthy: EO is usable for fusion after this frame (no latched fault).
    reason: 'eo_healthy', the latched fault, or 'eo_recovering'.
    clean: this frame on its own was fine (not dark/saturated/repeated/invalid).
    """

    healthy: bool
    reason: str
    clean: bool
    stats: FrameStats | None = None


@dataclass(frozen=True)
class ModeDecision:
    mode: str  # 'fused' | 'ir_only' | 'no_input'
    reason: str  # one of REASONS
    since_s: float  # time (of a decide call) at which this mode began
    changed: bool  # mode differs from the previous decision (True on the first call)


def luma_sample(image: np.ndarray, stride: int) -> np.ndarray:
    """uint8 luma (BT.601, integer weights) of every `stride`-th pixel of an RGB or grey image."""
    if image.dtype != np.uint8:
        raise ValueError(f"EO image must be uint8 (decode it with to_rgb8), got dtype {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(image[::stride, ::stride], dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"EO image must be HxW or HxWx3 (RGB), got shape {image.shape}")
    s = image[::stride, ::stride]
    r = s[:, :, 0].astype(np.uint16)
    g = s[:, :, 1].astype(np.uint16)
    b = s[:, :, 2].astype(np.uint16)
    y = r * 77 + g * 150 + b * 29 + 128  # weights sum to 256; +128 rounds
    return (y >> 8).astype(np.uint8)


def luma_histogram_stats(
    sample: np.ndarray, bright_level: int, saturated_level: int
) -> tuple[float, int, float, float]:
    """(mean, p99, fraction >= bright_level, fraction >= saturated_level) of a uint8 sample."""
    hist = np.bincount(sample.reshape(-1), minlength=256)
    n = sample.size
    mean = float(np.dot(hist, np.arange(256))) / n
    cdf = np.cumsum(hist)
    p99 = int(np.searchsorted(cdf, 0.99 * n))  # smallest level with >= 99 % of pixels at or below
    bright = float(cdf[-1] - (cdf[bright_level - 1] if bright_level > 0 else 0)) / n
    sat = float(cdf[-1] - (cdf[saturated_level - 1] if saturated_level > 0 else 0)) / n
    return mean, p99, bright, sat


class EoHealthMonitor:
    """Tracks EO/IR liveness and EO image health; decides the inference mode."""

    def __init__(self, params: HealthParams | None = None) -> None:
        self.params = (params or HealthParams()).validate()
        self.clock_resets = 0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything except the `clock_resets` counter (back to startup)."""
        self._first_time: float | None = None
        self._last_eo: float | None = None
        self._last_ir: float | None = None
        self._last_now: float | None = None
        self._eo_period: float | None = None
        self._ir_period: float | None = None
        self._prev_sig: np.ndarray | None = None
        self._dark_run = 0
        self._sat_run = 0
        self._same_run = 0  # how many times in a row the current picture was seen
        self._healthy_run = 0
        self._fault: str | None = "startup"
        self._mode: str | None = None
        self._mode_since = 0.0
        self.last_stats: FrameStats | None = None
        self.last_invalid_reason: str | None = None
        self.fault_counts: dict[str, int] = {}

    def clock_jumped_back(self, now_s: float) -> bool:
        """True when `now_s` is more than the tolerance before the latest decision time."""
        return jumped_back(self._last_now, now_s, self.params.clock_jump_tolerance_s)

    def _check_series(self, last: float | None, t: float) -> None:
        if jumped_back(last, t, self.params.clock_jump_tolerance_s):
            self.clock_resets += 1
            self.reset()

    @staticmethod
    def _time(t: float) -> float:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"health monitor times must be finite seconds, got {t!r}")
        return t

    def _touch(self, t: float) -> None:
        if self._first_time is None:
            self._first_time = t

    def _latch(self, reason: str) -> None:
        if self._fault != reason:
            self.fault_counts[reason] = self.fault_counts.get(reason, 0) + 1
        self._fault = reason
        self._healthy_run = 0

    def set_periods(self, eo_period_s: float | None, ir_period_s: float | None) -> None:
        """The streams' estimated frame periods (s, None = unknown): they stretch the stale limits."""
        self._eo_period = self._period(eo_period_s)
        self._ir_period = self._period(ir_period_s)

    @staticmethod
    def _period(value: float | None) -> float | None:
        return float(value) if value is not None and math.isfinite(value) and value > 0 else None

    def stale_limit(self, stream: str) -> float:
        """Seconds without a frame after which `stream` ('eo' | 'ir') is stale."""
        timeout, period = ((self.params.eo_timeout_s, self._eo_period) if stream == "eo"
                           else (self.params.ir_timeout_s, self._ir_period))
        return timeout if period is None else max(timeout, self.params.stale_periods * period)

    def _eo_gap(self, t: float) -> None:
        """A new EO observation at t: a gap >= the stale limit since the last one counts as stale."""
        if self._last_eo is not None and t - self._last_eo >= self.stale_limit("eo") - TIME_EPS:
            self._latch("eo_stale")
            self._forget_eo_history()

    def _forget_eo_history(self) -> None:
        self._prev_sig = None
        self._dark_run = self._sat_run = self._same_run = 0

    def _verdict(self, clean: bool, stats: FrameStats | None) -> EoFrameVerdict:
        return EoFrameVerdict(self._fault is None, self._eo_reason(), clean, stats)

    def _eo_reason(self) -> str:
        if self._fault is None:
            return "eo_healthy"
        if self._healthy_run > 0:
            return "eo_recovering"
        return self._fault

    # --------------------------------------------------------------- observe
    def observe_eo(self, stamp_s: float, rgb: np.ndarray) -> EoFrameVerdict:
        """Feed one decoded EO frame (HxWx3 RGB uint8, or HxW grey) observed at `stamp_s`."""
        p = self.params
        stamp_s = self._time(stamp_s)
        self._check_series(self._last_eo, stamp_s)
        self._touch(stamp_s)
        self._eo_gap(stamp_s)
        self._last_eo = stamp_s if self._last_eo is None else max(self._last_eo, stamp_s)

        sig = luma_sample(rgb, p.stride)
        mean, p99, bright, sat = luma_histogram_stats(sig, p.dark_bright_level, p.saturated_level)
        dark = mean < p.dark_luma_mean and bright < p.dark_bright_fraction
        saturated = sat > p.saturated_fraction
        mad: float | None = None
        repeated = False
        if self._prev_sig is not None and self._prev_sig.shape == sig.shape:
            mad = float(np.mean(np.abs(sig.astype(np.int16) - self._prev_sig)))
            repeated = mad <= p.frozen_max_mean_abs_diff
        self._prev_sig = sig
        self._same_run = self._same_run + 1 if repeated else 1
        self._dark_run = self._dark_run + 1 if dark else 0
        self._sat_run = self._sat_run + 1 if saturated else 0
        stats = FrameStats(mean, p99, bright, sat, mad, dark, saturated, repeated)
        self.last_stats = stats

        if not p.frozen_frames:
            repeated = False  # check disabled: a repeat is not a bad frame either
        clean = not (dark or saturated or repeated)
        if p.frozen_frames and self._same_run >= p.frozen_frames:
            self._latch("eo_frozen")
        elif self._sat_run >= p.saturated_frames:
            self._latch("eo_saturated")
        elif self._dark_run >= p.dark_frames:
            self._latch("eo_dark")
        elif not clean:
            self._healthy_run = 0  # not a fault (yet), but it restarts any recovery
        else:
            self._healthy_run += 1
            if self._fault is not None and self._healthy_run >= p.recover_frames:
                self._fault = None
        return self._verdict(clean, stats)

    def observe_eo_invalid(self, stamp_s: float, reason: str = "") -> EoFrameVerdict:
        """An EO message arrived at `stamp_s` but could not be decoded (e.g. ImageDecodeError.reason)."""
        stamp_s = self._time(stamp_s)
        self._check_series(self._last_eo, stamp_s)
        self._touch(stamp_s)
        self._eo_gap(stamp_s)
        self._last_eo = stamp_s if self._last_eo is None else max(self._last_eo, stamp_s)
        self.last_invalid_reason = reason or "unknown"
        self._forget_eo_history()
        self._latch("eo_invalid")
        return self._verdict(False, None)

    def observe_ir(self, stamp_s: float) -> None:
        """An IR frame was observed at `stamp_s`."""
        stamp_s = self._time(stamp_s)
        self._check_series(self._last_ir, stamp_s)
        self._touch(stamp_s)
        self._last_ir = stamp_s if self._last_ir is None else max(self._last_ir, stamp_s)

    # ---------------------------------------------------------------- decide
    def decide(self, now_s: float) -> ModeDecision:
        """The mode to run now. Stale boundaries are inclusive: stale when now - last >= timeout."""
        p = self.params
        now_s = self._time(now_s)
        self._check_series(self._last_now, now_s)
        self._touch(now_s)
        self._last_now = now_s if self._last_now is None else max(self._last_now, now_s)

        if self._last_eo is not None and now_s - self._last_eo >= self.stale_limit("eo") - TIME_EPS:
            self._latch("eo_stale")
            self._forget_eo_history()

        if self._last_ir is None:
            mode, reason = "no_input", (
                "startup" if now_s - self._first_time < p.ir_timeout_s - TIME_EPS else "ir_stale"
            )
        elif now_s - self._last_ir >= self.stale_limit("ir") - TIME_EPS:
            mode, reason = "no_input", "ir_stale"
        elif self._last_eo is None:
            mode, reason = "ir_only", (
                "startup" if now_s - self._first_time < p.eo_timeout_s - TIME_EPS else "eo_stale"
            )
        elif self._fault is not None:
            mode, reason = "ir_only", self._eo_reason()
        else:
            mode, reason = "fused", "eo_healthy"

        changed = mode != self._mode
        if changed:
            self._mode = mode
            self._mode_since = now_s
        return ModeDecision(mode, reason, self._mode_since, changed)

    # ----------------------------------------------------------- diagnostics
    def snapshot(self) -> dict[str, Any]:
        """Plain dict of the monitor's state for diagnostics (no ROS types)."""
        s = self.last_stats
        return {
            "mode": self._mode,
            "eo_state": self._eo_reason(),
            "healthy_run": self._healthy_run,
            "recover_frames": self.params.recover_frames,
            "dark_run": self._dark_run,
            "saturated_run": self._sat_run,
            "same_picture_run": self._same_run,
            "last_eo_s": self._last_eo,
            "last_ir_s": self._last_ir,
            "last_invalid_reason": self.last_invalid_reason,
            "fault_counts": dict(self.fault_counts),
            "clock_resets": self.clock_resets,
            "last_stats": None if s is None else asdict(s),
        }
