"""The node's optional ~/points output: depth frames (registered to the IR
camera) and the IR camera_info in, one semantic PointCloud2 per mask out.

Depth is paired with the IR frame a mask came from by stamp, exactly as EO is
(csk_ros/pairing.py: nearest within the sync slop, waiting at most the slop for
a late frame). Every depth message that cannot be used is counted by reason
in the node's `rejected` counter and every mask without a cloud in `counts`
(points_skipped_<reason>), both of which /diagnostics reports.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np

from .image_conversion import ImageDecodeError, image_to_array
from .pairing import EoBuffer, PairStatus, decide_pairing, stamp_seconds
from .semantic_cloud import DEPTH_ENCODINGS, CloudMessage, DepthError, Intrinsics, SemanticCloudBuilder, \
    depth_in_metres


class PointsOutput:
    """Shares the node's lock (a Condition, notified when depth arrives) and its counters."""

    def __init__(self, min_m: float, max_m: float, slop_s: float, clock_jump_s: float,
                 lock: threading.Condition, rejected: Counter, counts: Counter, logger):
        self.builder = SemanticCloudBuilder(min_m, max_m)
        self.cloud = CloudMessage()  # reused: the worker publishes each cloud before building the next
        self.buffer: EoBuffer = EoBuffer(max_len=10, jump_back_s=clock_jump_s)
        self.camera: Intrinsics | None = None
        self.slop_s = slop_s
        self.lock, self.rejected, self.counts, self.logger = lock, rejected, counts, logger

    # ------------------------------------------------------------ callbacks (executor thread)
    def on_depth(self, msg) -> None:
        reason, depth = None, None
        try:
            depth = image_to_array(msg)  # a view of the message's bytes: no copy until a cloud is built
            if msg.encoding not in DEPTH_ENCODINGS:
                reason = "encoding"
        except ImageDecodeError as exc:
            reason = exc.reason
        with self.lock:
            camera = self.camera
            if reason is None and camera is not None and depth.shape != (camera.height, camera.width):
                reason = "size_mismatch"
            if reason is None:
                self.counts["depth_received"] += 1
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
                  header, running) -> tuple[object | None, float]:
        """(PointCloud2 with `header`, or None when this mask gets no cloud; seconds spent waiting for depth).
        The message is reused by the next call: publish it before calling again."""
        t0 = time.monotonic()
        with self.lock:
            while True:
                pairing = decide_pairing(ir_stamp, ir_arrival_wall, time.monotonic(), self.buffer, self.slop_s)
                if pairing.status is not PairStatus.WAIT or not running():
                    break
                self.lock.wait(max(0.0, pairing.wait_until_s - time.monotonic()))
            camera = self.camera
        waited = time.monotonic() - t0
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
        with self.lock:
            self.counts[f"points_skipped_{skipped}" if skipped else "points_published"] += 1
        return cloud, waited

    def reset(self) -> None:
        """Clock jumped back: forget buffered depth (call with the lock held)."""
        self.buffer.clear()
