"""Small running measurements the node reports in /diagnostics (pure Python)."""

from __future__ import annotations

from collections import deque

import numpy as np


class RateMeter:
    """Arrival rate over a sliding wall-clock window, and the last arrival."""

    def __init__(self, window_s: float = 2.0):
        self.window_s = window_s
        self.times: deque[float] = deque()
        self.count = 0

    def tick(self, t: float) -> None:
        self.times.append(t)
        self.count += 1
        while self.times and t - self.times[0] > self.window_s:
            self.times.popleft()

    def rate(self, now: float) -> float:
        recent = [t for t in self.times if now - t <= self.window_s]
        return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0

    def age(self, now: float) -> float | None:
        return now - self.times[-1] if self.times else None


def percentiles(values) -> tuple[float, float]:
    """(p50, p95) of a sequence of numbers; NaNs when empty."""
    if not values:
        return float("nan"), float("nan")
    p50, p95 = np.percentile(np.fromiter(values, float), (50, 95))
    return float(p50), float(p95)
