"""Is the EO camera still registered to the IR camera? The verdict over the node's recent background checks.

One check (csk_ros.imaging.registration.check_registration) measures the translation that best aligns
the warped EO's edges with IR's on one frame pair; single checks can be fooled (a scene with little
structure, motion blur, a repetitive facade), so the verdict is the median of the last WINDOW checks that
could judge their frames, and needs MIN_VALID of them. A bumped bracket moves every check the same way,
so the median follows it within a few checks; one wild estimate does not move it.

A check whose best match sits on the border of its search window (`at_limit`) is not a measured shift on
its own: on dark, weakly textured frames of a registered rig the best chance match often lands in a corner
of the window (MFNet night frames: 33.9 px). It counts only when at least MIN_VALID - 1 other judged checks
in the window agree with it (shifts within `warn_px` of each other), as they do when a camera is knocked
beyond the window: then every check lands on the same border. And a WARN needs a consensus: the median
beyond `warn_px` and at least MIN_VALID single checks beyond CONSENSUS x `warn_px`. Agreement and
consensus need two views at least: checks of one view held still (a parked robot) agree with each other by
construction, so a robot standing before one misleading scene does not WARN, and one that stands before a
real offset WARNs once the view changes.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from csk_ros.imaging.registration import SAME_SCENE_GREY, scene_distance

WINDOW = 5  # checks in the verdict: at one check a second, a misregistration is reported within ~5 s
MIN_VALID = 3  # judged checks the window needs before it says anything
# Share of warn_px that MIN_VALID single checks must exceed besides the median (_off). Chosen on
# ../shared/data/msrs_unlabelled by benchmarks/registration_thresholds.py: the lowest of 1.0, 0.75, 0.5 with
# no false WARN there (0.5 left one); 1.0 cost 8 px detections that 0.75 keeps.
CONSENSUS = 0.75
FIX_HINT = ("a camera moved or eo_to_ir_homography does not fit this rig; re-fit it with `python -m "
            "csk_ros.calibrate board EO_DIR IR_DIR ...` (or score the current one with `python -m csk_ros.calibrate "
            "check`), then set eo_to_ir_homography (live: `ros2 param set`)")


def same_view(checks: list) -> bool:
    """All these checks saw one view (a scene held still: a parked robot, a slow pan). Its checks agree with
    each other by construction, so they are one piece of evidence, not several: a weak match on a dark
    frame held for 3 s would otherwise make its own consensus."""
    return all(scene_distance(checks[0], c) < SAME_SCENE_GREY for c in checks[1:])


class RegistrationHealth:
    """The recent checks and what they say, for /diagnostics and its WARN."""

    def __init__(self, warn_px: float, consensus: float = CONSENSUS):
        self.warn_px, self.consensus = warn_px, consensus
        self.recent: deque = deque(maxlen=WINDOW)  # RegistrationCheck of the last checks, judged or not
        self.checks = 0
        self.unjudged = 0
        self.check_ms: deque[float] = deque(maxlen=60)

    def record(self, check, cpu_ms: float) -> None:
        self.checks += 1
        self.unjudged += 0 if check.valid else 1
        self.recent.append(check)
        self.check_ms.append(cpu_ms)

    def reset(self) -> None:
        """A new homography: the old checks measured the old one."""
        self.recent.clear()

    def judged(self) -> list:
        """The recent checks the verdict uses: judged ones, at-limit ones only where others agree."""
        valid = [c for c in self.recent if c.valid and math.isfinite(c.offset_px)]
        return [c for c in valid if not getattr(c, "at_limit", False) or self._others_agree(c, valid)]

    def _others_agree(self, check, valid: list) -> bool:
        """MIN_VALID - 1 other checks within warn_px of it, one of them at least of another view."""
        agreeing = [o for o in valid if o is not check and math.dist(o.shift_px, check.shift_px) <= self.warn_px]
        return len(agreeing) >= MIN_VALID - 1 and not same_view(agreeing + [check])

    def set_aside(self) -> int:
        """Judged recent checks left out of the verdict (an at-limit match nothing agrees with)."""
        return sum(1 for c in self.recent if c.valid and math.isfinite(c.offset_px)) - len(self.judged())

    def shift_px(self) -> tuple[float, float] | None:
        """Median (dx, dy) over the judged recent checks, None until MIN_VALID of them."""
        judged = self.judged()
        if len(judged) < MIN_VALID:
            return None
        return (statistics.median(c.shift_px[0] for c in judged), statistics.median(c.shift_px[1] for c in judged))

    def state(self) -> str:
        shift = self.shift_px()
        if shift is None:
            return "waiting"  # too few judged checks so far (a dark, flat or unpaired scene)
        return "misregistered" if self._off(shift) else "ok"

    def _off(self, shift: tuple[float, float]) -> bool:
        """The median is beyond the limit AND at least MIN_VALID checks are beyond `consensus` x the limit, each
        on its own: with 3 or 4 judged checks the median of two outliers among good ones can cross the limit
        (dx and dy take their medians apart, and an even count averages the middle two); a moved camera
        moves every check."""
        beyond = [c for c in self.judged() if c.offset_px > self.consensus * self.warn_px]
        return math.hypot(*shift) > self.warn_px and len(beyond) >= MIN_VALID and not same_view(beyond)

    def warning(self) -> str:
        """The WARN line, "" while registration is fine or unknown."""
        shift = self.shift_px()
        if shift is None or not self._off(shift):
            return ""
        return (f"EO/IR registration off by {math.hypot(*shift):.1f} px (shift {shift[0]:+.1f}, {shift[1]:+.1f} IR px, "
                f"median of the last {len(self.judged())} checks; limit registration.warn_px {self.warn_px:g}): "
                + FIX_HINT)

    def diagnostics(self) -> dict[str, str]:
        shift = self.shift_px()
        judged = self.judged()
        last = self.recent[-1] if self.recent else None
        values = {
            "registration_state": self.state(),
            "registration_offset_px": "unknown" if shift is None else f"{math.hypot(*shift):.2f}",
            "registration_shift_px": "unknown" if shift is None else f"{shift[0]:+.2f},{shift[1]:+.2f}",
            "registration_score": f"{judged[-1].score:.3f}" if judged else "unknown",
            "registration_best_score": f"{judged[-1].best_score:.3f}" if judged else "unknown",
            "registration_checks": str(self.checks), "registration_unjudged": str(self.unjudged),
            "registration_set_aside": str(self.set_aside()),
            "registration_note": last.note if last is not None and last.note else "",
            "registration_check_ms_p50": f"{statistics.median(self.check_ms):.2f}" if self.check_ms else "unknown",
        }
        return values
