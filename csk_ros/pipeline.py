"""The node's per-frame logic without ROS: one core that the live node and the bag tool both drive.

`SegmentationPipeline` holds everything that decides what a frame becomes:
decoding (raw or compressed), the EO health monitor, the EO buffer and
pairing rule, transport-loss estimation, clock-jump resets, inference with
fallback, the confidence policy, rendering, the ``~/mode`` announcer, the
counters and the /diagnostics values. It owns no thread, no lock and no
clock: every call gets its times from the caller (the node passes its ROS
clock and time.monotonic(); `python -m csk_ros.bag` passes bag time for
both), and the caller serialises the calls (the node holds its lock).

Messages are duck-typed: rclpy messages and rosbags' deserialised ones have
the same fields (header.stamp, encoding, data, format, ...).
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from csk_ros.imaging.compressed import compressed_to_ir8, compressed_to_rgb8
from csk_ros.imaging.frames import InputPreparer, colorize, overlay, palette_lut, resize_nearest
from csk_ros.imaging.ros_image import ImageDecodeError, to_ir8, to_rgb8
from csk_ros.logic.clock import jumped_back
from csk_ros.logic.config import NodeConfig
from csk_ros.logic.health import EoHealthMonitor, ModeDecision
from csk_ros.logic.labels import apply_confidence_policy
from csk_ros.logic.meters import RateMeter, percentiles
from csk_ros.logic.mode_report import Announcement, ModeAnnouncer
from csk_ros.logic.modes import Mode, Reason
from csk_ros.logic.pairing import EoBuffer, PairDecision, PairStatus, decide_pairing, stamp_seconds
from csk_ros.logic.status import StatusInputs, assess, lossy
from csk_ros.logic.stream_loss import StreamLossEstimator

UNPAIRED_WARN_FRACTION = 0.2  # diagnostics WARN when this share of recent masks lacked an EO partner


@dataclass
class IrJob:
    """One decoded IR frame waiting for inference: its header, pixels, stamp and arrival times."""

    header: object
    ir: np.ndarray
    stamp: float
    arrival_ros: float
    arrival_wall: float
    decode_ms: float


@dataclass
class FrameResult:
    """What one IR frame became: the published mask and confidence, the model that ran and why."""

    job: IrJob
    mask: np.ndarray
    confidence: np.ndarray
    mode: str
    reason: str
    decision: ModeDecision
    inference_ms: float
    overhead_ms: float  # the rest of infer(): EO registration, resizing, the confidence policy


def is_compressed(msg) -> bool:
    """sensor_msgs/CompressedImage has `format`, sensor_msgs/Image has `encoding` (ROS or rosbags classes)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


class SegmentationPipeline:
    """Per-frame decisions of the segmentation node. Not thread-safe: the caller serialises calls."""

    def __init__(self, config: NodeConfig, segmenter, log=None):
        self.config = config
        self.segmenter = segmenter
        self.log = log or (lambda message: None)
        self._bind_model()
        self.health = EoHealthMonitor(config.health)
        # One tolerance for "the clock jumped back" everywhere (pipeline, monitor, buffer).
        self.clock_jump_s = config.health.clock_jump_tolerance_s
        self.eo_buffer: EoBuffer = EoBuffer(max_len=30, jump_back_s=self.clock_jump_s)
        self.recent_unpaired: deque[bool] = deque(maxlen=100)
        self.eo_loss = StreamLossEstimator(max_gap_s=config.health.eo_timeout_s)
        self.ir_loss = StreamLossEstimator(max_gap_s=config.health.ir_timeout_s)
        self.announcer = ModeAnnouncer(config.health.stale_periods)
        self.rejected: Counter = Counter()
        self.counts: Counter = Counter()
        self.eo_rate, self.ir_rate, self.mask_rate = RateMeter(), RateMeter(), RateMeter()
        self.latency_ms: deque[float] = deque(maxlen=300)
        self.latency_ms_by_mode = {Mode.FUSED.value: deque(maxlen=300), Mode.IR_ONLY.value: deque(maxlen=300)}
        self.overhead_ms: deque[float] = deque(maxlen=300)
        self.decode_ms = {"eo": deque(maxlen=300), "ir": deque(maxlen=300)}
        self.last_ros_now: float | None = None
        self.last_ir_rejection_wall = -1e9
        self.alarms_published: tuple | None = None  # alarms() of the last /diagnostics

    def _bind_model(self) -> None:
        """What depends on the bundle and the config: the IR scaling rule, the EO registration, the palette."""
        bundle = self.segmenter.bundle
        self.thermal_rule = self.config.thermal_rule(bundle.thermal_scaling)
        self.preparer = InputPreparer(bundle.height, bundle.width, self.config.homography)
        self.lut = palette_lut(bundle.palette)

    # ---------------------------------------------------------------- live changes
    def apply_config(self, config: NodeConfig) -> None:
        """A validated config whose live parameters changed (`ros2 param set`): from the next frame on.
        Health state, buffers and counters are kept; only the rules change."""
        self.config = config
        self._bind_model()
        self.health.params = config.health.validate()
        self.clock_jump_s = config.health.clock_jump_tolerance_s
        self.eo_buffer.jump_back_s = self.clock_jump_s
        self.eo_loss.max_gap_s, self.ir_loss.max_gap_s = config.health.eo_timeout_s, config.health.ir_timeout_s
        self.announcer.stale_periods = config.health.stale_periods

    def swap_segmenter(self, segmenter):
        """Serve a new model from the next frame on (~/reload_model); returns the old one for the caller to close.
        Counters, health and the ~/mode timeline carry over: a swap is not a restart."""
        old, self.segmenter = self.segmenter, segmenter
        self._bind_model()
        self.counts["model_swaps"] += 1
        return old

    # ---------------------------------------------------------------- inputs
    def arrived(self, stream: str, wall: float) -> None:
        """A message of `stream` arrived (decodable or not): its rate and age in /diagnostics."""
        (self.eo_rate if stream == "eo" else self.ir_rate).tick(wall)

    def decode(self, stream: str, msg) -> tuple[np.ndarray, float]:
        """(rgb8 or ir8 pixels, decode ms) of one message of `stream`; raises ImageDecodeError."""
        t0 = time.monotonic()
        if stream == "eo":
            image = compressed_to_rgb8(msg) if is_compressed(msg) else to_rgb8(msg)
        else:
            image = compressed_to_ir8(msg, self.thermal_rule) if is_compressed(msg) else to_ir8(msg, self.thermal_rule)
        return image, (time.monotonic() - t0) * 1e3

    def check_clock_jump(self, now: float) -> bool:
        """Bag loop / sim reset: drop every time-keyed buffer instead of wedging on old stamps. True when
        it reset (the caller drops what it holds too: a pending frame, buffered depth)."""
        jumped = jumped_back(self.last_ros_now, now, self.clock_jump_s)
        if jumped:
            self.log(f"clock jumped back {self.last_ros_now - now:.2f} s: resetting buffers")
            self.health.reset()
            self.eo_buffer.clear()
            self.announcer.restart_timeline()
            self.counts["clock_resets"] += 1
        self.last_ros_now = now
        return jumped

    def _observe_stamp(self, estimator: StreamLossEstimator, header) -> None:
        """Every message that arrived counts for transport loss, decodable or not."""
        estimator.observe(stamp_seconds(header.stamp))
        self.health.set_periods(self.eo_loss.period(), self.ir_loss.period())

    def eo_rejected(self, header, now: float, exc: ImageDecodeError) -> None:
        self._observe_stamp(self.eo_loss, header)
        self.rejected[f"eo_{exc.reason}"] += 1
        self.health.observe_eo_invalid(now, exc.reason)

    def eo_frame(self, header, rgb: np.ndarray, now: float, decode_ms: float) -> bool:
        """A decoded EO frame; True when the clock jumped back first (see check_clock_jump)."""
        jumped = self.check_clock_jump(now)
        self._observe_stamp(self.eo_loss, header)
        self.decode_ms["eo"].append(decode_ms)
        self.health.observe_eo(now, rgb)
        self.eo_buffer.add(stamp_seconds(header.stamp), rgb)
        return jumped

    def ir_rejected(self, header, wall: float, exc: ImageDecodeError) -> None:
        self._observe_stamp(self.ir_loss, header)
        self.rejected[f"ir_{exc.reason}"] += 1
        self.last_ir_rejection_wall = wall

    def ir_frame(self, job: IrJob, decode_ms: float) -> bool:
        """A decoded IR frame; True when the clock jumped back first (see check_clock_jump)."""
        jumped = self.check_clock_jump(job.arrival_ros)
        self._observe_stamp(self.ir_loss, job.header)
        self.decode_ms["ir"].append(decode_ms)
        self.health.observe_ir(job.arrival_ros)
        return jumped

    # ---------------------------------------------------------------- pairing
    def decide(self, now_ros: float) -> ModeDecision:
        return self.health.decide(now_ros)

    def pairing(self, job: IrJob, wall: float, decision_mode: str) -> PairDecision:
        """MATCHED / WAIT / NO_PARTNER for `job` at `wall`. While the monitor has given EO up, waiting for a
        partner would only delay the IR-only mask: no partner at once."""
        if decision_mode != Mode.FUSED:
            return PairDecision(PairStatus.NO_PARTNER)
        return decide_pairing(job.stamp, job.arrival_wall, wall, self.eo_buffer, self.config.sync_slop_s)

    # ---------------------------------------------------------------- inference
    def infer(self, job: IrJob, pairing: PairDecision, decision: ModeDecision) -> FrameResult:
        """Run the model the decision and the pairing allow, at the output size, with the confidence policy."""
        t0 = time.monotonic()
        mode, reason = decision.mode, decision.reason
        eo = None
        if mode == Mode.FUSED:
            if pairing.status is PairStatus.MATCHED and self.segmenter.has_fused:
                try:
                    eo = self.preparer.eo(pairing.eo_item, job.ir.shape[:2])
                except ValueError as exc:  # counted in record()
                    self.log(str(exc))
                    mode, reason = Mode.IR_ONLY, Reason.EO_SIZE_MISMATCH
            else:
                mode, reason = Mode.IR_ONLY, (Reason.EO_UNPAIRED if self.segmenter.has_fused else
                                              Reason.NO_FUSED_GRAPH)
        elif mode == Mode.NO_INPUT:  # IR just arrived, so the monitor is only catching up
            mode, reason = Mode.IR_ONLY, Reason.IR_CATCHING_UP
        ir = self.preparer.ir(job.ir)
        t1 = time.monotonic()
        mask, conf = self.segmenter.fused(eo, ir) if mode == Mode.FUSED else self.segmenter.ir_only(ir)
        t2 = time.monotonic()
        if self.config.output_size == "ir":
            mask, conf = resize_nearest(mask, job.ir.shape[:2]), resize_nearest(conf, job.ir.shape[:2])
        mask = apply_confidence_policy(mask, conf, self.config.confidence_threshold,
                                       self.config.low_confidence_policy)
        overhead_ms = (t1 - t0 + time.monotonic() - t2) * 1e3
        return FrameResult(job, mask, conf, mode, reason, decision, (t2 - t1) * 1e3, overhead_ms)

    def colored(self, result: FrameResult) -> np.ndarray:
        """bgr8 class colours of the mask (~/colored_mask)."""
        return colorize(result.mask, self.lut)

    def overlay(self, result: FrameResult, colored: np.ndarray) -> np.ndarray:
        """bgr8 class colours over the IR frame (~/overlay)."""
        base = resize_nearest(result.job.ir, result.mask.shape[:2])
        return overlay(base, colored, self.config.overlay_alpha)

    def record(self, result: FrameResult, finished_wall: float, post_ms: float) -> Announcement | None:
        """Count a published mask; the ~/mode announcement it causes, if any (publish it with mode_json).
        `post_ms`: time spent on this frame after infer() (rendering, publishing)."""
        mode, reason, decision = result.mode, result.reason, result.decision
        self.counts[f"masks_{mode}"] += 1
        self.latency_ms.append(result.inference_ms)
        self.latency_ms_by_mode[mode].append(result.inference_ms)
        self.overhead_ms.append(result.job.decode_ms + result.overhead_ms + post_ms)
        self.mask_rate.tick(finished_wall)
        if decision.mode == Mode.FUSED:
            self.recent_unpaired.append(mode != Mode.FUSED)
        if (mode, reason) != (decision.mode, decision.reason):
            self.counts[f"frames_{reason}"] += 1  # a per-frame fallback (see csk_ros/logic/mode_report.py)
        if reason == Reason.EO_SIZE_MISMATCH:  # counted here, under the caller's lock, not in infer()
            self.rejected["eo_size_mismatch"] += 1
        return self._counted(self.announcer.frame((mode, reason), (decision.mode, decision.reason),
                                                  decision.since_s, result.job.arrival_ros,
                                                  self.health.stale_limit("eo")))

    # ---------------------------------------------------------------- ~/mode and /diagnostics
    def startup_announcement(self, now_ros: float) -> Announcement | None:
        return self._counted(self.announcer.decision(Mode.NO_INPUT.value, Reason.STARTUP.value, now_ros))

    def _counted(self, announcement: Announcement | None) -> Announcement | None:
        if announcement is not None:
            self.counts[f"switches_to_{announcement.mode}"] += 1
        return announcement

    def mode_json(self, announcement: Announcement) -> str:
        """The ~/mode payload of an announcement."""
        # Mode(...) / Reason(...) raise on a string the Enums do not hold: nothing undocumented is published
        return json.dumps({"mode": Mode(announcement.mode).value, "reason": Reason(announcement.reason).value,
                           "since": round(announcement.since, 6), "backend": self.segmenter.backend_name})

    def running_precision(self) -> str:
        """What the backend runs (TensorRT: per graph, e.g. an fp16 engine for a graph without int8), not
        what was asked for."""
        running = self.segmenter.info.get("precision", self.config.precision)
        return running if isinstance(running, str) else json.dumps(running, sort_keys=True)

    def alarms(self, now_ros: float) -> tuple[bool, bool, bool]:
        """(IR stale, EO loss above the WARN level, IR loss above it): a change publishes /diagnostics at once."""
        return self._alarms(self.health.decide(now_ros).mode, self.eo_loss.report(), self.ir_loss.report())

    def _alarms(self, health_mode: str, eo, ir) -> tuple[bool, bool, bool]:
        limit = self.config.loss_warn_fraction
        return (health_mode == Mode.NO_INPUT, lossy(eo.loss_fraction, eo.lost, limit),
                lossy(ir.loss_fraction, ir.lost, limit))

    def diagnostics(self, now_ros: float, wall: float, context: dict[str, str],
                    extra: dict[str, str] | None = None, warnings: tuple[str, ...] = (),
                    extra_rejected: Counter | None = None) -> tuple[int, str, dict[str, str], Announcement | None]:
        """(level, message, key/values, a no_input announcement to publish or None) of one /diagnostics
        status.
        `context`: the shell's own keys (label_info, publish_points); `extra`: more keys (~/points, the
        registration check); `warnings`: WARN lines of those (the registration check); `extra_rejected`:
        messages the core never saw that were rejected (~/points' depth), counted with its own."""
        cfg = self.config
        rejected = self.rejected + (extra_rejected or Counter())
        decision = self.health.decide(now_ros)
        announcement = None
        if decision.mode == Mode.NO_INPUT:
            announcement = self._counted(self.announcer.decision(Mode.NO_INPUT.value, decision.reason,
                                                                 decision.since_s))
        ir_age = self.ir_rate.age(wall)
        ir_limit = self.health.stale_limit("ir")
        ir_rejected = ", ".join(k[3:] for k in sorted(self.rejected) if k.startswith("ir_") and
                                self.last_ir_rejection_wall > wall - ir_limit)
        unpaired = (sum(self.recent_unpaired) / len(self.recent_unpaired)) if self.recent_unpaired else 0.0
        ir_dead = decision.mode == Mode.NO_INPUT or ir_age is None or ir_age > ir_limit
        mode, reason = self.announcer.state
        loss = {"eo": self.eo_loss.report(), "ir": self.ir_loss.report()}
        lat50, lat95 = percentiles(self.latency_ms)
        ovh50, ovh95 = percentiles(self.overhead_ms)
        values = {
            "mode": mode, "reason": reason, "health_mode": decision.mode, "health_reason": decision.reason,
            "mode_since": f"{self.announcer.since:.3f}",
            "eo_rate_hz": f"{self.eo_rate.rate(wall):.2f}", "ir_rate_hz": f"{self.ir_rate.rate(wall):.2f}",
            "mask_rate_hz": f"{self.mask_rate.rate(wall):.2f}",
            "eo_age_s": "never" if self.eo_rate.age(wall) is None else f"{self.eo_rate.age(wall):.3f}",
            "ir_age_s": "never" if ir_age is None else f"{ir_age:.3f}",
            "inference_ms_p50": f"{lat50:.2f}", "inference_ms_p95": f"{lat95:.2f}",
            "overhead_ms_p50": f"{ovh50:.3f}", "overhead_ms_p95": f"{ovh95:.3f}",
            "backend": self.segmenter.backend_name, "precision": self.running_precision(),
            "bundle": str(self.segmenter.bundle.root),
            "backend_info": json.dumps(self.segmenter.info, default=str),
            "eo_received": str(self.eo_rate.count), "ir_received": str(self.ir_rate.count),
            "eo_transport": cfg.eo_transport, "ir_transport": cfg.ir_transport,
            "rejected_total": str(sum(rejected.values())),
            "unpaired_fraction_recent": f"{unpaired:.3f}",
            **context,
        }
        for which, samples in self.latency_ms_by_mode.items():
            m50, m95 = percentiles(samples)
            values.update({f"inference_{which}_ms_p50": f"{m50:.2f}", f"inference_{which}_ms_p95": f"{m95:.2f}"})
        for stream, report in loss.items():
            d50, d95 = percentiles(self.decode_ms[stream])
            values.update({
                f"{stream}_loss_fraction": f"{report.loss_fraction:.4f}",
                f"{stream}_lost_total": str(report.total_lost),
                f"{stream}_period_ms": "unknown" if report.period_s is None else f"{1e3 * report.period_s:.2f}",
                f"{stream}_stale_limit_s": f"{self.health.stale_limit(stream):.3f}",
                f"{stream}_decode_ms_p50": f"{d50:.3f}", f"{stream}_decode_ms_p95": f"{d95:.3f}",
            })
        values.update(extra or {})
        values.update({f"rejected_{k}": str(v) for k, v in sorted(rejected.items())})
        values.update({k: str(v) for k, v in sorted(self.counts.items())})
        self.alarms_published = self._alarms(decision.mode, loss["eo"], loss["ir"])
        level, message = assess(StatusInputs(
            ir_dead=ir_dead, ir_dead_reason=decision.reason, ir_rejected_reasons=ir_rejected,
            eo_loss=loss["eo"].loss_fraction, ir_loss=loss["ir"].loss_fraction,
            eo_lost=loss["eo"].lost, ir_lost=loss["ir"].lost,
            loss_warn_fraction=cfg.loss_warn_fraction, qos=cfg.qos, unpaired_fraction=unpaired,
            unpaired_warn_fraction=UNPAIRED_WARN_FRACTION, mode=mode, reason=reason, other_warnings=warnings))
        return level, message, values, announcement
