"""Scaling raw thermal counts (16-bit or float) to 8 bits.

One rule, used by training (datasets) and by the node (mono16 / 16UC1 / 32FC1
messages), so the model sees IR scaled the same way in both places.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("fixed", "percentile")


@dataclass(frozen=True)
class ThermalScaling:
    """How raw IR values map to 0..255.

    mode "fixed": `low` -> 0 and `high` -> 255 (radiometric cameras, stable).
    mode "percentile": per frame, the `low_pct`/`high_pct` percentiles map to
    0/255 (robust auto-gain for cameras without a known range).
    8-bit input is never rescaled: it is already in the model's range.
    """

    mode: str = "percentile"
    low: float = 0.0
    high: float = 65535.0
    low_pct: float = 1.0
    high_pct: float = 99.0
    # Percentiles are estimated on every `stride`-th pixel in each axis: the
    # estimate is stable and 16x cheaper than the full frame at stride 4.
    stride: int = 4

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"thermal scaling mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "fixed" and not self.high > self.low:
            raise ValueError(f"thermal scaling 'fixed' needs high > low, got low={self.low} high={self.high}")
        if self.mode == "percentile" and not 0.0 <= self.low_pct < self.high_pct <= 100.0:
            raise ValueError(
                "thermal scaling 'percentile' needs 0 <= low_pct < high_pct <= 100, "
                f"got low_pct={self.low_pct} high_pct={self.high_pct}"
            )
        if self.stride < 1:
            raise ValueError(f"thermal scaling stride must be >= 1, got {self.stride}")

    @classmethod
    def from_dict(cls, values: dict | None) -> "ThermalScaling":
        """Build from a config mapping; unknown keys are an error, not ignored."""
        values = dict(values or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown thermal scaling key(s) {unknown}; expected some of {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def scale_thermal_to_uint8(raw: np.ndarray, rule: ThermalScaling) -> np.ndarray:
    """Return a uint8 HxW image from a single-channel IR array of any depth."""
    if raw.ndim != 2:
        raise ValueError(f"thermal image must be single-channel HxW, got shape {raw.shape}")
    if raw.dtype == np.uint8:
        return raw
    if rule.mode == "fixed":
        low, high = float(rule.low), float(rule.high)
    else:
        sample = raw[:: rule.stride, :: rule.stride]
        finite = sample[np.isfinite(sample)] if raw.dtype.kind == "f" else sample
        if finite.size == 0:
            return np.zeros(raw.shape, np.uint8)
        low, high = (float(v) for v in np.percentile(finite, (rule.low_pct, rule.high_pct)))
        if high <= low:  # flat frame: map it to mid-grey rather than divide by zero
            return np.full(raw.shape, 128 if raw.size else 0, np.uint8)
    scale = 255.0 / (high - low)
    out = (raw.astype(np.float32) - np.float32(low)) * np.float32(scale)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(out, 0.0, 255.0).astype(np.uint8)
