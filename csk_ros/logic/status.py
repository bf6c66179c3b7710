"""The /diagnostics verdict of the segment node: level and message from its
counters (pure Python; the node only gathers the numbers and publishes).

Priority: no masks at all (IR dead or all IR rejected) is an ERROR; otherwise
every applicable warning is listed, transport loss first because it is the
usual root cause of the others (missing EO partners, IR-only fallbacks).
"""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, ERROR = 0, 1, 2
#: a loss WARN needs at least this many lost frames in the window as well as the fraction: right after a
#: start, one late frame among ten would otherwise read as 10 % loss
MIN_LOST_FOR_WARN = 3
PROFILE_HINT = ("load the shipped Fast DDS profile (config/fastdds_large_frames.xml, "
                "FASTDDS_DEFAULT_PROFILES_FILE) in the camera driver's process AND this node's, "
                "or publish and subscribe with reliable QoS (node parameter qos: reliable)")


@dataclass(frozen=True)
class StatusInputs:
    ir_dead: bool  # no IR within its stale limit (or never)
    ir_dead_reason: str
    ir_rejected_reasons: str  # recent IR rejection reasons, "" if none
    eo_loss: float  # transport loss fractions (gaps in the stamps)
    ir_loss: float
    eo_lost: int  # frames lost in the same window
    ir_lost: int
    loss_warn_fraction: float
    qos: str  # the node's input QoS: sensor_data | reliable
    unpaired_fraction: float
    unpaired_warn_fraction: float
    mode: str
    reason: str
    other_warnings: tuple[str, ...] = ()  # from outside the per-frame core: the registration check


def loss_warning(stream: str, loss: float, qos: str) -> str:
    """Name the likely cause and the fix of transport loss on one stream."""
    if qos == "sensor_data":
        cause = ("frames lost in transport: large frames on best-effort QoS overflow Fast DDS's default 512 KB "
                 "shared-memory segment and are dropped as fragmented UDP")
        fix = PROFILE_HINT
    else:
        cause = "gaps in the stamps although the subscription is reliable: the sender skips frames"
        fix = "check the camera driver's own frame drops and its publisher history depth"
    return f"{stream} loses {100 * loss:.0f}% of its frames ({cause}); fix: {fix}"


def lossy(fraction: float, lost: int, limit: float) -> bool:
    """The loss WARN rule: above the fraction limit AND at least MIN_LOST_FOR_WARN frames lost."""
    return fraction > limit and lost >= MIN_LOST_FOR_WARN


def assess(s: StatusInputs) -> tuple[int, str]:
    if s.ir_dead and s.ir_rejected_reasons:
        return ERROR, f"IR messages arrive but are rejected ({s.ir_rejected_reasons}): no masks"
    if s.ir_dead:
        return ERROR, f"no IR input ({s.ir_dead_reason}): no masks are published"
    warnings = [loss_warning(name, loss, s.qos) for name, loss, lost in (("IR", s.ir_loss, s.ir_lost),
                                                                          ("EO", s.eo_loss, s.eo_lost))
                if lossy(loss, lost, s.loss_warn_fraction)]
    if s.unpaired_fraction > s.unpaired_warn_fraction:
        warnings.append(f"{100 * s.unpaired_fraction:.0f}% of recent IR frames had no EO partner within "
                        "sync_slop_s: those ran IR-only")
    if s.mode != "fused":
        warnings.append(f"IR-only fallback ({s.reason})")
    warnings += [w for w in s.other_warnings if w]
    if warnings:
        return WARN, "; ".join(warnings)
    return OK, "fused EO+IR segmentation"
