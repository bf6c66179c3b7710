"""The one rule for "the clock jumped back" (a bag loop, a simulation reset), used by the pipeline, the
EO health monitor and the stamp-keyed buffers alike, each on its own time series."""

from __future__ import annotations


def jumped_back(last: float | None, now: float, tolerance_s: float | None) -> bool:
    """True when time went back by more than `tolerance_s` since `last` (None: nothing to compare, or
    the check is off)."""
    return last is not None and tolerance_s is not None and now < last - tolerance_s
