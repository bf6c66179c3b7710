"""`bag segment`: every IR frame of a recording through the node's pipeline, on bag time.

The live node's worker takes the freshest IR frame, waits at most
`sync_slop_s` for a late EO partner and drops frames it cannot keep up with.
Offline nothing is dropped: IR frames queue in bag order and each one is
decided the way the node decides a frame it has time for. "Now" is the bag's
receive time of the message being read (the node's clock at arrival), so a
frame waiting for its partner is settled when the partner is read, or at its
deadline (arrival + slop) when a later message shows that time has passed.
Everything is a function of the bag: the same bag gives the same output.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass, field

from csk_ros.bag.bagio import IMAGE, Topics
from csk_ros.imaging.ros_image import ImageDecodeError
from csk_ros.logic.meters import percentiles
from csk_ros.logic.pairing import PairStatus, stamp_seconds
from csk_ros.pipeline import IrJob, SegmentationPipeline

STRING = "std_msgs/msg/String"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
NS = 1_000_000_000
# /diagnostics values measured on the wall clock: offline they would make two runs of one bag differ,
# so the bag carries "offline" there and the run summary has the timings.
WALL_CLOCK_SUFFIXES = ("_ms_p50", "_ms_p95")


@dataclass
class RunSummary:
    """What `bag segment` prints at the end (and writes with --json)."""

    messages_read: int = 0
    decoded: Counter = field(default_factory=Counter)
    rejected: dict = field(default_factory=dict)
    ir_frames: int = 0
    masks: int = 0
    masks_fused: int = 0
    masks_ir_only: int = 0
    mode_timeline: list = field(default_factory=list)  # [bag time s, mode, reason]
    eo_outages: list = field(default_factory=list)  # [start s, end s or None, reason] of non-fused stretches
    inference_ms: tuple = (0.0, 0.0)
    decode_ms: dict = field(default_factory=dict)
    wall_s: float = 0.0
    frames_per_s: float = 0.0
    bag_truncated: str | None = None

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["decoded"] = dict(self.decoded)
        d["fused_share"] = self.masks_fused / self.masks if self.masks else 0.0
        d["ir_only_share"] = self.masks_ir_only / self.masks if self.masks else 0.0
        d["inference_ms"] = {"p50": self.inference_ms[0], "p95": self.inference_ms[1]}
        return d


class OfflineSegmenter:
    """Drives one SegmentationPipeline through a bag's messages and writes the node's outputs."""

    def __init__(self, pipeline: SegmentationPipeline, topics: Topics, node_name: str = "segment_node",
                 diagnostics_period_s: float | None = None, render_colored: bool = True):
        self.core, self.out, self.factory = pipeline, topics, topics.factory
        self.ns = f"/{node_name.strip('/')}"
        self.period = diagnostics_period_s or pipeline.config.diagnostics_period_s
        self.render_colored = render_colored
        self.queue: deque[IrJob] = deque()
        self.head_mode: str | None = None  # health mode when the worker would have taken queue[0]
        self.next_diag: float | None = None
        self.last_out_ns = 0
        self.summary = RunSummary()
        self.inference_ms: list[float] = []

    # ---------------------------------------------------------------- time
    def _out_time(self, t: float) -> int:
        """Bag time of an output message: never before the previous one (readers expect order)."""
        self.last_out_ns = max(self.last_out_ns, int(round(t * NS)))
        return self.last_out_ns

    def start(self, t: float, class_list_json: str) -> None:
        self.out.write(f"{self.ns}/classes", STRING, self.factory.string(class_list_json), self._out_time(t))
        self._mode(self.core.startup_announcement(t), t)
        self.next_diag = t + self.period

    def _advance(self, t: float) -> None:
        """Everything due before bag time t: waiting frames whose deadline passed, /diagnostics ticks."""
        while True:
            deadline = self._head_deadline()
            events = [e for e in (deadline, self.next_diag) if e is not None and e < t]
            if not events:
                return
            when = min(events)
            if deadline is not None and deadline == when:
                self._settle(when, force=True)
            else:
                self._diagnostics(when)
                self.next_diag += self.period

    def _head_deadline(self) -> float | None:
        if not self.queue:
            return None
        return self.queue[0].arrival_wall + self.core.config.sync_slop_s

    # ---------------------------------------------------------------- messages
    def on_message(self, stream: str, msg, t: float, decoded=None) -> None:
        """One input message (deserialised) of `stream` received at bag time t; `decoded`: the result of
        core.decode(stream, msg) when it was decoded ahead ((image, ms) or the ImageDecodeError)."""
        self._advance(t)
        self.summary.messages_read += 1
        self.core.arrived(stream, t)
        if decoded is None:
            try:
                decoded = self.core.decode(stream, msg)
            except ImageDecodeError as exc:
                decoded = exc
        if isinstance(decoded, ImageDecodeError):
            (self.core.eo_rejected(msg.header, t, decoded) if stream == "eo" else
             self.core.ir_rejected(msg.header, t, decoded))
            return
        image, decode_ms = decoded
        self.summary.decoded[stream] += 1
        if stream == "eo":
            if self.core.eo_frame(msg.header, image, t, decode_ms):
                self._clock_reset()
        else:
            job = IrJob(msg.header, image, stamp_seconds(msg.header.stamp), t, t, decode_ms)
            if self.core.ir_frame(job, decode_ms):
                self._clock_reset()
            self.summary.ir_frames += 1
            self.queue.append(job)
        self._settle(t)

    def _clock_reset(self) -> None:
        """The core reset its time-keyed state (clock jumped back): the queued frames go too."""
        self.queue.clear()
        self.head_mode = None

    def undecodable(self, stream: str, reason: str) -> None:
        """A message that could not even be deserialised: counted as the node counts a bad message."""
        self.summary.messages_read += 1
        self.core.rejected[f"{stream}_{reason}"] += 1

    def _settle(self, now: float, force: bool = False) -> None:
        """Decide the queued frames in order, as far as `now` allows (force: the head's deadline is now)."""
        while self.queue:
            job = self.queue[0]
            if self.head_mode is None:
                self.head_mode = self.core.decide(job.arrival_ros).mode
            mode = self.head_mode
            wall = now
            if force or len(self.queue) > 1:  # a newer IR frame waits: the node settles for the best partner now
                wall = max(now, job.arrival_wall + self.core.config.sync_slop_s)
            pairing = self.core.pairing(job, wall, mode)
            if pairing.status is PairStatus.WAIT:
                return
            self.queue.popleft()
            self.head_mode = None
            self._process(job, pairing, self.core.decide(wall), wall)
            force = False

    def _process(self, job: IrJob, pairing, decision, t: float) -> None:
        result = self.core.infer(job, pairing, decision)
        out_ns = self._out_time(t)
        self.out.write(f"{self.ns}/mask", IMAGE, self.factory.image(result.mask, "mono8", job.header), out_ns)
        self.out.write(f"{self.ns}/confidence", IMAGE, self.factory.image(result.confidence, "mono8", job.header),
                       out_ns)
        if self.render_colored:
            self.out.write(f"{self.ns}/colored_mask", IMAGE,
                           self.factory.image(self.core.colored(result), "bgr8", job.header), out_ns)
        self.inference_ms.append(result.inference_ms)
        self._mode(self.core.record(result, t, 0.0), t)
        self.summary.masks += 1

    def _mode(self, announcement, t: float) -> None:
        if announcement is None:
            return
        self.out.write(f"{self.ns}/mode", STRING, self.factory.string(self.core.mode_json(announcement)),
                       self._out_time(t))
        timeline = self.summary.mode_timeline
        timeline.append([round(t, 6), announcement.mode, announcement.reason])
        outages = self.summary.eo_outages
        if announcement.mode == "fused":
            if outages and outages[-1][1] is None:
                outages[-1][1] = round(t, 6)
        elif not outages or outages[-1][1] is not None:
            if len(timeline) > 1:  # the start-up no_input is not an outage
                outages.append([round(t, 6), None, announcement.reason])

    def _diagnostics(self, t: float) -> None:
        cfg = self.core.config
        context = {"label_info": "offline", "publish_points": "false"}
        level, message, values, announcement = self.core.diagnostics(t, t, context)
        values = {k: "offline" if k.endswith(WALL_CLOCK_SUFFIXES) else v for k, v in values.items()}
        self._mode(announcement, t)
        msg = self.factory.diagnostics(int(round(t * NS)), level, f"{self.ns}: segmentation", message,
                                       cfg.hardware_id, values)
        self.out.write("/diagnostics", DIAGNOSTICS, msg, self._out_time(t))

    def finish(self, t_end: float) -> RunSummary:
        """The end of the bag: every queued frame is settled (no later EO can arrive), a last /diagnostics."""
        while self.queue:
            self._advance(self._head_deadline() + 1e-9)
        self._advance(t_end)
        self._diagnostics(max(t_end, self.last_out_ns / NS))
        s = self.summary
        s.rejected = {k: v for k, v in sorted(self.core.rejected.items())}
        s.masks_fused, s.masks_ir_only = self.core.counts["masks_fused"], self.core.counts["masks_ir_only"]
        s.inference_ms = percentiles(self.inference_ms)
        s.decode_ms = {stream: dict(zip(("p50", "p95"), percentiles(v))) for stream, v in self.core.decode_ms.items()}
        return s


def print_summary(summary: RunSummary, file=None) -> None:
    d = summary.as_dict()
    rows = [("messages read", d["messages_read"]), ("decoded EO / IR", f"{d['decoded'].get('eo', 0)} / "
                                                                        f"{d['decoded'].get('ir', 0)}"),
            ("rejected", ", ".join(f"{k} {v}" for k, v in d["rejected"].items()) or "none"),
            ("IR frames", d["ir_frames"]), ("masks", d["masks"]),
            ("fused / IR-only", f"{100 * d['fused_share']:.1f} % / {100 * d['ir_only_share']:.1f} %"),
            ("inference ms p50 / p95", f"{d['inference_ms']['p50']:.2f} / {d['inference_ms']['p95']:.2f}"),
            *((f"decode {k} ms p50 / p95", f"{v['p50']:.2f} / {v['p95']:.2f}") for k, v in d["decode_ms"].items()),
            ("throughput", f"{d['frames_per_s']:.1f} IR frames/s ({d['wall_s']:.1f} s)")]
    if d["bag_truncated"]:
        rows.append(("bag truncated", d["bag_truncated"]))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=file)
    print("  mode timeline (bag time s, mode, reason):", file=file)
    for t, mode, reason in d["mode_timeline"]:
        print(f"    {t:.3f}  {mode:<8} {reason}", file=file)
    if d["eo_outages"]:
        print("  EO outages (start s - end s, reason): " + "; ".join(
            f"{a:.3f}-{'end' if b is None else f'{b:.3f}'} {r}" for a, b, r in d["eo_outages"]), file=file)


def summary_json(summary: RunSummary) -> str:
    return json.dumps(summary.as_dict(), indent=2, sort_keys=True)
