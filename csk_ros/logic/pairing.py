"""IR-driven EO pairing (pure Python, no ROS).

Every IR frame is paired with the EO frame nearest in stamp within
``slop_s``, waiting at most ``slop_s`` (measured from the IR frame's arrival)
for a late EO partner. IR drives: an IR frame is never dropped for lack of EO,
it is then processed IR-only (NO_PARTNER).

Rules of ``decide_pairing`` (EO assumed to arrive in stamp order; EO out of
order is stored correctly but never waited for):
  * candidate = the buffered EO nearest to the IR stamp with |dt| <= slop
    (boundary inclusive, within TIME_EPS = 1 us); a tie goes to the EARLIER EO frame, which is the one
    already there -- we never wait for an equally good partner.
  * with a candidate at distance d, only an EO stamped strictly inside
    (ir - d, ir + d) would be nearer. It can still come only while the newest
    buffered EO stamp is < ir + d (and, given a lower bound on the EO spacing
    ``min_eo_interval_s``, while newest + interval < ir + d). If it can, and
    the waiting time since the IR arrived is < slop, WAIT; else MATCHED.
  * without a candidate: WAIT while an EO stamped <= ir + slop can still come
    (newest < ir + slop, or newest + min_eo_interval_s <= ir + slop) and the
    waiting time is < slop; else NO_PARTNER.
Without ``min_eo_interval_s`` an exact nearest choice can cost up to the EO
frame period of latency when the nearest EO is older than the IR frame; pass
e.g. 0.8 / eo_rate_hz (or ``EoBuffer.median_interval() * 0.8``) to cut that.
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from csk_ros.logic.clock import jumped_back

T = TypeVar("T")

#: Float tolerance of every stamp comparison (boundaries, ties). Float seconds
#: of an epoch time (~1.7e9) only resolve ~0.24 us, so "exactly on the slop
#: boundary" and "a tie" are decided within 1 us.
TIME_EPS = 1e-6

__all__ = ["TIME_EPS", "EoBuffer", "PairStatus", "PairDecision", "decide_pairing", "stamp_seconds"]


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time -> float seconds (the clock every pairing rule compares on)."""
    return stamp.sec + stamp.nanosec * 1e-9


class EoBuffer(Generic[T]):
    """EO frames sorted by stamp, at most ``max_len`` (the oldest stamps are dropped).

    ``add`` keeps the list sorted even when frames arrive out of order; an equal
    stamp replaces the stored item. A stamp older than the newest by more than
    ``jump_back_s`` is taken as a backwards clock jump (bag loop, sim reset):
    the buffer clears itself first, so it can never wedge on stale future
    stamps. ``clear()`` does the same explicitly (call it when the node's clock
    jumps back).
    """

    def __init__(self, max_len: int = 30, jump_back_s: float | None = 1.0) -> None:
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            raise ValueError(f"EoBuffer max_len must be an integer >= 1, got {max_len!r}")
        if jump_back_s is not None and not (math.isfinite(jump_back_s) and jump_back_s >= 0):
            raise ValueError(f"EoBuffer jump_back_s must be a finite number >= 0 or None, got {jump_back_s!r}")
        self.max_len = max_len
        self.jump_back_s = jump_back_s
        self._stamps: list[float] = []
        self._items: list[T] = []
        self.jumps_back = 0  # how many times a backwards jump cleared the buffer
        self.dropped_late = 0  # out-of-order frames older than everything in a full buffer

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_stamp(self) -> float | None:
        return self._stamps[-1] if self._stamps else None

    @property
    def oldest_stamp(self) -> float | None:
        return self._stamps[0] if self._stamps else None

    def clear(self) -> None:
        self._stamps.clear()
        self._items.clear()

    def add(self, stamp_s: float, item: T) -> bool:
        """Store ``item`` at ``stamp_s``; False if it was dropped (too old for a full buffer)."""
        stamp_s = float(stamp_s)
        if not math.isfinite(stamp_s):
            raise ValueError(f"EO stamp must be finite, got {stamp_s!r}")
        newest = self.newest_stamp
        if jumped_back(newest, stamp_s, self.jump_back_s):
            self.jumps_back += 1
            self.clear()
        i = bisect.bisect_left(self._stamps, stamp_s)
        if i < len(self._stamps) and self._stamps[i] == stamp_s:
            self._items[i] = item
            return True
        if len(self._stamps) >= self.max_len and i == 0:
            self.dropped_late += 1
            return False
        self._stamps.insert(i, stamp_s)
        self._items.insert(i, item)
        if len(self._stamps) > self.max_len:
            del self._stamps[0]
            del self._items[0]
        return True

    def nearest(self, stamp_s: float, slop_s: float) -> tuple[float, T] | None:
        """(stamp, item) nearest to ``stamp_s`` with |dt| <= slop_s; ties -> the earlier one.

        Boundary and ties within TIME_EPS.
        """
        if not self._stamps:
            return None
        i = bisect.bisect_left(self._stamps, stamp_s)  # _stamps[i-1] < stamp_s <= _stamps[i]
        best: int | None = None
        best_d = math.inf
        for j in (i - 1, i):  # earlier first; the later one wins only if nearer by > TIME_EPS
            if 0 <= j < len(self._stamps):
                d = abs(self._stamps[j] - stamp_s)
                if d < best_d - TIME_EPS:
                    best, best_d = j, d
        if best is None or best_d > slop_s + TIME_EPS:
            return None
        return self._stamps[best], self._items[best]

    def median_interval(self) -> float | None:
        """Median spacing of the buffered stamps (None with fewer than 2 frames)."""
        if len(self._stamps) < 2:
            return None
        gaps = sorted(b - a for a, b in zip(self._stamps, self._stamps[1:]))
        return gaps[len(gaps) // 2]

    def items(self) -> list[tuple[float, T]]:
        return list(zip(self._stamps, self._items))


class PairStatus(enum.Enum):
    MATCHED = "matched"
    WAIT = "wait"
    NO_PARTNER = "no_partner"


@dataclass(frozen=True)
class PairDecision:
    status: PairStatus
    eo_stamp: float | None = None
    eo_item: Any = None
    offset_s: float | None = None  # eo_stamp - ir_stamp when MATCHED
    wait_until_s: float | None = None  # when WAIT: decide again at the latest at this time


def decide_pairing(
    ir_stamp_s: float,
    ir_arrival_s: float,
    now_s: float,
    buffer: EoBuffer,
    slop_s: float,
    min_eo_interval_s: float | None = None,
) -> PairDecision:
    """MATCHED / WAIT / NO_PARTNER for one IR frame (see the module docstring).

    ``ir_arrival_s`` and ``now_s`` are on the same clock (the node's); stamps on
    the stamps' clock. Waiting time = now - arrival; the wait ends at arrival + slop.
    """
    if not slop_s >= 0:
        raise ValueError(f"sync slop must be >= 0, got {slop_s!r}")
    if min_eo_interval_s is not None and not min_eo_interval_s >= 0:
        raise ValueError(f"min_eo_interval_s must be >= 0 or None, got {min_eo_interval_s!r}")
    waited = now_s - ir_arrival_s
    may_wait = waited < slop_s - TIME_EPS
    newest = buffer.newest_stamp
    interval = min_eo_interval_s or 0.0

    def later_eo_possible(before: float, inclusive: bool) -> bool:
        """Can an EO stamped < before (<= before when inclusive) still arrive (in order)?"""
        if newest is None:
            return True
        if interval > 0:  # the next EO is stamped >= newest + interval
            earliest = newest + interval
            return earliest <= before + TIME_EPS if inclusive else earliest < before - TIME_EPS
        return newest < before - TIME_EPS  # the next EO is stamped > newest

    found = buffer.nearest(ir_stamp_s, slop_s)
    if found is not None:
        eo_stamp, item = found
        d = abs(eo_stamp - ir_stamp_s)
        if d > TIME_EPS and may_wait and later_eo_possible(ir_stamp_s + d, inclusive=False):
            return PairDecision(PairStatus.WAIT, wait_until_s=ir_arrival_s + slop_s)
        return PairDecision(PairStatus.MATCHED, eo_stamp, item, eo_stamp - ir_stamp_s)
    if may_wait and later_eo_possible(ir_stamp_s + slop_s, inclusive=True):
        return PairDecision(PairStatus.WAIT, wait_until_s=ir_arrival_s + slop_s)
    return PairDecision(PairStatus.NO_PARTNER)
