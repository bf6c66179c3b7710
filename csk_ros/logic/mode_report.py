"""What ``~/mode`` announces (pure Python, no ROS, no clock of its own).

``~/mode`` tells planners which model runs and why. Two things can make a
mask IR-only: the health monitor's decision (EO stale, dark, frozen, ...), and
a per-frame fallback while the monitor says fused (this IR frame found no EO
partner within ``sync_slop_s``, or EO could not be registered to it).

Rules
  * A health decision is announced at once (it has its own hysteresis).
  * A per-frame fallback is counted every time but announced only when the
    run of consecutive fallback frames is as long as a dead stream would need
    to be declared stale: at least ``stale_periods`` frames AND
    ``min_duration_s`` (the EO stale limit) of frame time. So a lossy but alive
    EO stream (30 % random loss, isolated bursts) never flaps ``~/mode``, while a
    persistent pairing failure (EO stamps offset by more than the slop, EO that
    cannot be registered) is announced as fast as an EO stop would be.
  * The first paired frame after an announced fallback announces the health
    decision again (back to fused).
  * An announcement never starts before the previous one (``since`` is
    monotonic), and repeating the current state announces nothing.
  * ``eo_recovering`` inside a mode is not announced: a sparse EO stream
    would otherwise toggle stale / recovering on every frame that arrives;
    recovery progress is in /diagnostics (health_reason), and the switch back
    to fused is announced when it happens.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Announcement:
    mode: str
    reason: str
    since: float


class ModeAnnouncer:
    def __init__(self, stale_periods: int = 10):
        self.stale_periods = stale_periods
        self.state: tuple[str, str] | None = None
        self.since = 0.0
        self.fallback_run = 0
        self.fallback_since = 0.0
        self.announcements = 0

    def restart_timeline(self) -> None:
        """After a backwards clock jump: switch times restart on the new timeline."""
        self.since = 0.0

    def _announce(self, mode: str, reason: str, since: float) -> Announcement | None:
        if self.state == (mode, reason) or (self.state and self.state[0] == mode and reason == "eo_recovering"):
            return None
        self.state = (mode, reason)
        self.since = max(since, self.since)
        self.announcements += 1
        return Announcement(mode, reason, self.since)

    def decision(self, mode: str, reason: str, since: float) -> Announcement | None:
        """A health decision (e.g. no_input from the diagnostics timer, where no frame runs)."""
        return self._announce(mode, reason, since)

    def frame(self, ran: tuple[str, str], decided: tuple[str, str], decided_since: float, frame_time: float,
              min_duration_s: float) -> Announcement | None:
        """One mask was produced with mode/reason `ran` while the monitor had decided `decided`."""
        if ran == decided:
            self.fallback_run = 0
            return self._announce(*decided, decided_since)
        self.fallback_run += 1
        if self.fallback_run == 1:
            self.fallback_since = frame_time
        long_enough = (self.fallback_run >= self.stale_periods
                       and frame_time - self.fallback_since >= min_duration_s - 1e-6)
        return self._announce(*ran, self.fallback_since) if long_enough else None
