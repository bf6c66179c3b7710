"""Transport loss of one camera stream, estimated from its header stamps (pure Python).

A camera stamps its frames at a steady period, so a gap in the stamps of the
frames that arrived means frames were lost on the way (usually inside DDS:
large frames on best-effort QoS without a shared-memory segment big enough for
them). This is a transport problem, not a sensor fault, and the node reports
it separately from EO health.

Rules
  * The frame period is a low quantile (25 %) of the last ``window`` positive
    stamp intervals: the true period as long as at least a quarter of the
    intervals are single periods, i.e. up to ~50 % random loss, and it is not
    pulled up by the long intervals that the losses themselves create (a median
    would be, above 50 % loss).
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

    def __init__(self, window: int = 150, max_gap_s: float = 2.0, quantile: float = 0.25):
        if window < MIN_INTERVALS:
            raise ValueError(f"window must be >= {MIN_INTERVALS}, got {window}")
        self.window, self.max_gap_s, self.quantile = window, max_gap_s, quantile
        self.total_received = 0
        self.total_lost = 0
        self.restarts = 0
        self._last: float | None = None
        self._intervals: deque[float] = deque(maxlen=window)
        self._missing: deque[int] = deque(maxlen=window)  # lost frames before each interval's end

    def period(self) -> float | None:
        if len(self._intervals) < MIN_INTERVALS:
            return None
        return float(np.quantile(np.fromiter(self._intervals, float), self.quantile))

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
            return 0
        period = self.period()
        lost = 0
        if period is not None and dt <= self.max_gap_s:
            lost = max(0, int(round(dt / period)) - 1)
        self._intervals.append(dt)
        self._missing.append(lost)
        self.total_lost += lost
        return lost

    def report(self) -> LossReport:
        lost = sum(self._missing)
        return LossReport(self.period(), len(self._missing), lost, self.total_received, self.total_lost)
