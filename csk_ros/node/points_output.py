"""The node's optional ~/points output: depth frames (registered to the IR
camera) and the IR camera_info in, one semantic PointCloud2 per mask out.

Depth is paired with the IR frame a mask came from by stamp, as EO is
(csk_ros/logic/pairing.py: nearest within the sync slop, waiting at most the slop for
a late frame) -- but never waiting while a newer IR frame is pending or while
the depth stream has gone quiet (DEPTH_QUIET_S), so a missing depth camera
cannot delay the masks. The wait is reported (`depth_wait_ms_p50/p95`), not
hidden in the overhead. Every depth message that cannot be used is counted by reason
in `rejected` (the node's /diagnostics adds them to its own rejections: `rejected_depth_<reason>`,
`rejected_total`) and every mask without a cloud in `counts` (points_skipped_<reason>).

It shares the node's lock, a Condition, on purpose: the worker's wait for depth must wake both when
depth arrives (notified here) and when a newer IR frame is pending (notified by the node), so one
condition serves both waits; the counters are its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

from csk_ros.imaging.ros_image import ImageDecodeError, image_to_array
from csk_ros.imaging.semantic_cloud import (
    DEPTH_ENCODINGS,
    CloudMessage,
    DepthError,
    Intrinsics,
    SemanticCloudBuilder,
    depth_in_metres,
)
from csk_ros.logic.meters import percentiles
from csk_ros.logic.pairing import EoBuffer, PairStatus, decide_pairing, stamp_seconds

DEPTH_QUIET_S = 0.5  # no depth frame for this long: stop waiting for one (the masks must not slow down)
DEPTH_BUFFER_FRAMES = 90  # depth is looked up after inference: ~1 s at 90 Hz, 3 s at 30 Hz, of 0.6 MB views


class PointsOutput:
    """Shares the node's lock (a Condition, notified when depth arrives); keeps its own counters."""

    def __init__(self, min_m: float, max_m: float, slop_s: float, clock_jump_s: float,
                 lock: threading.Condition, logger):
        self.builder = SemanticCloudBuilder(min_m, max_m)
        self.cloud = CloudMessage()  # reused: the worker publishes each cloud before building the next
        self.buffer: EoBuffer = EoBuffer(max_len=DEPTH_BUFFER_FRAMES, jump_back_s=clock_jump_s)
        self.camera: Intrinsics | None = None
        self.slop_s = slop_s
        self.last_depth_wall: float | None = None
        self.wait_ms: deque[float] = deque(maxlen=300)
        self.lock, self.logger = lock, logger
        self.rejected: Counter = Counter()  # unusable depth / camera_info messages by reason
        self.counts: Counter = Counter()  # depth_received, points_published, points_skipped_<reason>

    # ------------------------------------------------------------ callbacks (executor thread)
    def on_depth(self, msg) -> None:
        reason, depth = None, None
        if msg.encoding not in DEPTH_ENCODINGS:
            reason = "encoding"
        else:
            try:
                depth = image_to_array(msg)  # a view of the message's bytes: no copy until a cloud is built
            except ImageDecodeError as exc:
                reason = exc.reason
        with self.lock:
            camera = self.camera
            if reason is None and camera is not None and depth.shape != (camera.height, camera.width):
                reason = "size_mismatch"
            if reason is None:
                self.counts["depth_received"] += 1
                self.last_depth_wall = time.monotonic()
                self.buffer.add(stamp_seconds(msg.header.stamp), (depth, msg.encoding))
                self.lock.notify_all()
            else:
                self.rejected[f"depth_{reason}"] += 1
        if reason is not None:
            want = "no camera_info yet" if camera is None else f"{camera.width}x{camera.height}"
            self.logger.warning(f"dropped depth message ({reason}): {msg.encoding} {msg.width}x{msg.height}; "
                                f"~/points needs 16UC1 (mm) or 32FC1 (m) registered to the IR camera ({want})",
                                throttle_duration_sec=5.0)

    def on_camera_info(self, msg) -> None:
        try:
            camera = Intrinsics.from_camera_info(msg)
        except DepthError as exc:
            with self.lock:
                self.rejected[f"camera_info_{exc.reason}"] += 1
            self.logger.warning(str(exc), throttle_duration_sec=5.0)
            return
        with self.lock:
            self.camera = camera

    # ------------------------------------------------------------ worker thread
    def cloud_for(self, ir_stamp: float, ir_arrival_wall: float, mask: np.ndarray, confidence: np.ndarray,
                  header, may_wait) -> tuple[object | None, float]:
        """(PointCloud2 with `header`, or None when this mask gets no cloud; seconds spent waiting for depth).
        `may_wait()` (called with the lock held) is false while the node stops or a newer IR frame is pending.
        The message is reused by the next call: publish it before calling again."""
        t0 = time.monotonic()
        with self.lock:
            while True:
                now = time.monotonic()
                pairing = decide_pairing(ir_stamp, ir_arrival_wall, now, self.buffer, self.slop_s)
                if pairing.status is not PairStatus.WAIT:
                    break
                quiet = self.last_depth_wall is None or now - self.last_depth_wall > DEPTH_QUIET_S
                if quiet or not may_wait():  # settle for the best partner there is now
                    pairing = decide_pairing(ir_stamp, ir_arrival_wall, ir_arrival_wall + self.slop_s,
                                             self.buffer, self.slop_s)
                    break
                self.lock.wait(max(0.0, min(pairing.wait_until_s - now, DEPTH_QUIET_S)))
            camera = self.camera
            waited = time.monotonic() - t0
            self.wait_ms.append(waited * 1e3)
        skipped, cloud = None, None
        if pairing.status is not PairStatus.MATCHED:
            skipped = "no_depth"
        elif camera is None:
            skipped = "no_camera_info"
        else:
            depth, encoding = pairing.eo_item
            try:
                metres = depth_in_metres(depth, encoding, out=self.builder.scratch("metres", depth.shape, np.float32))
                self.builder.build(metres, camera, mask, confidence,
                                   out=self.cloud.points_buffer(*mask.shape))
                cloud = self.cloud.message(header)
            except DepthError as exc:
                skipped = exc.reason
            except ValueError as exc:  # not an inference error: this mask is published, only its cloud is not
                skipped = "bad_shape"
                self.logger.warning(f"no cloud for this mask: {exc}", throttle_duration_sec=5.0)
        with self.lock:
            self.counts[f"points_skipped_{skipped}" if skipped else "points_published"] += 1
        return cloud, waited

    def diagnostics(self) -> dict[str, str]:
        """Values for /diagnostics (call with the lock held); the rejections go through the node's, see above."""
        w50, w95 = percentiles(self.wait_ms)
        return {"depth_wait_ms_p50": f"{w50:.2f}", "depth_wait_ms_p95": f"{w95:.2f}",
                **{k: str(v) for k, v in sorted(self.counts.items())}}

    def reset(self) -> None:
        """Clock jumped back: forget buffered depth (call with the lock held)."""
        self.buffer.clear()
