"""The modes ``~/mode`` announces and every reason it gives: one home for the strings planners parse.

Values are the strings published today (``{"mode": "ir_only", "reason": "eo_stale", ...}``); members
compare equal to them, so rules written against the strings keep working. docs/ros_interface.md's
table of reasons is generated from DESCRIPTIONS (a test keeps the two equal).
"""

from __future__ import annotations

from enum import Enum


class _Text(str, Enum):
    """A str-valued Enum that formats as its value (f"masks_{Mode.FUSED}" == "masks_fused") on every
    Python the runtime supports (3.10 has no enum.StrEnum)."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__
    __hash__ = str.__hash__  # a dict keyed by the strings finds the members


class Mode(_Text):
    FUSED = "fused"
    IR_ONLY = "ir_only"
    NO_INPUT = "no_input"


class Reason(_Text):
    # the EO health monitor's decision (csk_ros/logic/health.py)
    EO_HEALTHY = "eo_healthy"
    EO_STALE = "eo_stale"
    EO_DARK = "eo_dark"
    EO_SATURATED = "eo_saturated"
    EO_FROZEN = "eo_frozen"
    EO_INVALID = "eo_invalid"
    EO_RECOVERING = "eo_recovering"
    IR_STALE = "ir_stale"
    STARTUP = "startup"
    # per-frame fallbacks while the monitor says fused (csk_ros/pipeline.py, csk_ros/logic/mode_report.py)
    EO_UNPAIRED = "eo_unpaired"
    EO_SIZE_MISMATCH = "eo_size_mismatch"
    NO_FUSED_GRAPH = "no_fused_graph"
    IR_CATCHING_UP = "ir_catching_up"


HEALTH_REASONS = tuple(Reason)[: tuple(Reason).index(Reason.STARTUP) + 1]
FRAME_REASONS = tuple(r for r in Reason if r not in HEALTH_REASONS)

DESCRIPTIONS = {
    Reason.EO_HEALTHY: "EO frames arrive, are paired and pass the health checks: the fused graph runs.",
    Reason.EO_STALE: "No EO frame for the stale limit (health.eo_timeout_s and health.stale_periods frame "
                     "periods, whichever is longer).",
    Reason.EO_DARK: "EO too dark to carry information: mean luma below health.dark_luma_mean AND fewer "
                    "than health.dark_bright_fraction of the pixels at health.dark_bright_level or above, "
                    "for health.dark_frames frames in a row.",
    Reason.EO_SATURATED: "EO washed out: health.saturated_fraction of the pixels at health.saturated_level or "
                         "above, for health.saturated_frames frames in a row.",
    Reason.EO_FROZEN: "EO repeats the same picture: health.frozen_frames frames in a row within "
                      "health.frozen_max_mean_abs_diff of each other.",
    Reason.EO_INVALID: "EO messages arrive but cannot be decoded (counted as rejected_eo_<reason>).",
    Reason.EO_RECOVERING: "EO is back and must stay healthy for health.recover_frames frames before fused "
                          "runs again (not announced inside a mode; visible as health_reason).",
    Reason.IR_STALE: "No IR frame for the IR stale limit: no masks (mode no_input, /diagnostics ERROR).",
    Reason.STARTUP: "The node started: no IR frame yet (no_input), or EO has not yet proven itself.",
    Reason.EO_UNPAIRED: "IR frames find no EO partner within sync_slop_s (announced after a run as long "
                        "as a stale stream would need).",
    Reason.EO_SIZE_MISMATCH: "EO cannot be registered to IR (different aspect ratio and no "
                             "eo_to_ir_homography).",
    Reason.NO_FUSED_GRAPH: "The bundle has no fused graph: IR-only always.",
    Reason.IR_CATCHING_UP: "The first IR frames after no_input, before the monitor has seen IR.",
}


def reasons_table_markdown() -> str:
    """The table of ~/mode reasons in docs/ros_interface.md."""
    rows = ["| reason | kind | meaning |", "|---|---|---|"]
    rows += [f"| `{r.value}` | {'health decision' if r in HEALTH_REASONS else 'per-frame fallback'} | "
             f"{DESCRIPTIONS[r]} |" for r in Reason]
    return "\n".join(rows) + "\n"
