"""Transport loss of one camera stream, estimated from its header stamps (pure Python).

A camera stamps its frames at a steady period, so a gap in the stamps of the
frames that arrived means frames were lost on the way (usually inside DDS:
large frames on best-effort QoS without a shared-memory segment big enough for
them). This is a transport problem, not a sensor fault, and the node reports
it separately from EO health.

Rules
  * The frame period is the median of the shortest cluster of the last
    ``window`` positive stamp intervals: starting from the smallest interval
    c, the intervals within [c, 1.5 c]; a cluster needs at least
    ``max(3, 15 %)`` of the intervals, so odd stamps (a driver that is late
    for one frame and catches up with the next) cannot pass for the period.
    Lost frames only ever make intervals LONGER (multiples of the period), so
    the shortest well-populated cluster is the period up to ~75 % loss, where
    a median or a quartile would be several periods.
  * An interval of ``dt`` stands for ``round(dt / period)`` periods; the
    frames in between (``round(dt / period) - 1``) are lost. Intervals longer
    than ``max_gap_s`` are a stop or a pause, not loss: they count nothing
    (the stream's staleness is the health monitor's business).
  * The loss fraction is lost / (received + lost) over the frames of the last
    ``window`` intervals, so it follows the present, not the whole run.
  * A stamp that is not newer than the previous one (a duplicate, a reordering,
    a clock jump back) restarts the estimate; it is counted in ``restarts``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

#: fewer intervals than this: no period estimate yet (and no loss reported)
MIN_INTERVALS = 8
#: the smallest share of the intervals that makes a cluster the period
CLUSTER_SHARE = 0.15
#: the period estimate is recomputed after this many new intervals
REFRESH_EVERY = 8


@dataclass(frozen=True)
class LossReport:
    period_s: float | None  # estimated frame period, None until MIN_INTERVALS intervals
    received: int  # frames in the window
    lost: int  # frames missing in the window
    total_received: int  # since start
    total_lost: int  # since start

    @property
    def loss_fraction(self) -> float:
        n = self.received + self.lost
        return self.lost / n if n else 0.0


class StreamLossEstimator:
    """Feed it every received frame's stamp (seconds); ask for ``report()``."""

    def __init__(self, window: int = 150, max_gap_s: float = 2.0):
        if window < MIN_INTERVALS:
            raise ValueError(f"window must be >= {MIN_INTERVALS}, got {window}")
        self.window, self.max_gap_s = window, max_gap_s
        self.total_received = 0
        self.total_lost = 0
        self.restarts = 0
        self._last: float | None = None
        self._intervals: deque[float] = deque(maxlen=window)
        self._missing: deque[int] = deque(maxlen=window)  # lost frames before each interval's end
        self._cached: float | None = None
        self._fresh = 0  # intervals added since the cached period was computed

    def period(self) -> float | None:
        """The estimated frame period (s); refreshed every REFRESH_EVERY intervals (it is read per frame)."""
        if self._cached is None or self._fresh >= REFRESH_EVERY:
            self._cached, self._fresh = self._estimate_period(), 0
        return self._cached

    def _estimate_period(self) -> float | None:
        if len(self._intervals) < MIN_INTERVALS:
            return None
        intervals = np.sort(np.fromiter(self._intervals, float))
        needed = max(3, int(np.ceil(CLUSTER_SHARE * intervals.size)))
        for c in intervals[: intervals.size - needed + 1]:
            cluster = intervals[(intervals >= c) & (intervals <= 1.5 * c)]
            if cluster.size >= needed:
                return float(np.median(cluster))
        return float(np.median(intervals))

    def observe(self, stamp_s: float) -> int:
        """Record one received frame; return how many frames were lost right before it."""
        stamp_s = float(stamp_s)
        if not math.isfinite(stamp_s):
            raise ValueError(f"stamp must be finite, got {stamp_s!r}")
        self.total_received += 1
        last, self._last = self._last, stamp_s
        if last is None:
            return 0
        dt = stamp_s - last
        if dt <= 0:
            self.restarts += 1
            self._intervals.clear()
            self._missing.clear()
            self._cached = None
            return 0
        period = self.period()
        lost = 0
        if period is not None and dt <= self.max_gap_s:
            lost = max(0, int(round(dt / period)) - 1)
        self._intervals.append(dt)
        self._missing.append(lost)
        self._fresh += 1
        self.total_lost += lost
        return lost

    def report(self) -> LossReport:
        lost = sum(self._missing)
        return LossReport(self.period(), len(self._missing), lost, self.total_received, self.total_lost)
