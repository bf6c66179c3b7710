"""Is the EO camera still registered to the IR camera? The verdict over the node's recent background checks.

One check (csk_ros.imaging.registration.check_registration) measures the translation that best aligns
the warped EO's edges with IR's on one frame pair; single checks can be fooled (a scene with little
structure, motion blur, a repetitive facade), so the verdict is the median of the last WINDOW checks that
could judge their frames, and needs MIN_VALID of them. A bumped bracket moves every check the same way,
so the median follows it within a few checks; one wild estimate does not move it.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

WINDOW = 5  # checks in the verdict: at one check a second, a misregistration is reported within ~5 s
MIN_VALID = 3  # judged checks the window needs before it says anything
FIX_HINT = ("a camera moved or eo_to_ir_homography does not fit this rig; re-fit it with `python -m "
            "csk_ros.calibrate board EO_DIR IR_DIR ...` (or score the current one with `python -m csk_ros.calibrate "
            "check`), then set eo_to_ir_homography (live: `ros2 param set`)")


class RegistrationHealth:
    """The recent checks and what they say, for /diagnostics and its WARN."""

    def __init__(self, warn_px: float):
        self.warn_px = warn_px
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
        return [c for c in self.recent if c.valid and math.isfinite(c.offset_px)]

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
        return "misregistered" if math.hypot(*shift) > self.warn_px else "ok"

    def warning(self) -> str:
        """The WARN line, "" while registration is fine or unknown."""
        shift = self.shift_px()
        if shift is None or math.hypot(*shift) <= self.warn_px:
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
            "registration_note": last.note if last is not None and last.note else "",
            "registration_check_ms_p50": f"{statistics.median(self.check_ms):.2f}" if self.check_ms else "unknown",
        }
        return values
