"""The segment node's inference thread: take the freshest IR frame, pair it, run the model, publish.

A mixin of SegmentNode (csk_ros/node/segment_node.py), kept apart because it is the one part that runs on its own
thread: everything here happens on the worker, and everything it shares with the executor thread goes
through `self.lock` (a Condition: IR and EO arrivals notify it). It uses the node's `core` (the per-frame
rules), `config`, `pending` / `running`, `points`, `registration`, `transport`, the publishers and
`frame_lock`, which it holds for one frame so that a model swap lands between two frames.
"""

from __future__ import annotations

import time

from csk_ros.imaging.ros_image import array_to_image
from csk_ros.logic.modes import Mode
from csk_ros.logic.pairing import PairStatus
from csk_ros.pipeline import FrameResult, IrJob


class FrameWorker:
    """The worker thread's loop (`_work`), started by SegmentNode.on_activate."""

    def _next_pair(self):
        """Block until an IR job is pending; return it with its EO partner (or None) and the mode."""
        with self.lock:
            while self.running and self.pending is None:
                self.lock.wait(0.1)
            if not self.running:
                return None
            job, self.pending = self.pending, None
            slop = self.config.sync_slop_s
            mode = self.core.decide(self._ros_now()).mode
            while True:
                wall = time.monotonic()
                if self.pending is not None:  # a newer IR frame waits: settle for the best partner now
                    wall = max(wall, job.arrival_wall + slop)
                pairing = self.core.pairing(job, wall, mode)
                if pairing.status is not PairStatus.WAIT or not self.running:
                    break
                self.lock.wait(max(0.0, pairing.wait_until_s - wall))
            decision = self.core.decide(self._ros_now())
        return job, pairing, decision

    def _work(self) -> None:
        while self.running:
            item = self._next_pair()
            if item is None:
                return
            try:
                with self.frame_lock:
                    self._process(*item)
            except Exception as exc:  # never let one bad frame kill the worker
                if not self.running or not self.context.ok():
                    return  # shutting down: the context went away under a publish; not an inference error
                with self.lock:
                    self.core.counts["inference_errors"] += 1
                self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=5.0)

    def _process(self, job: IrJob, pairing, decision) -> None:
        result = self.core.infer(job, pairing, decision)
        t2 = time.monotonic()
        watch = self.registration  # deactivate may drop it meanwhile
        if result.mode == Mode.FUSED and watch is not None:
            watch.offer(pairing.eo_item, job.ir)
        if not self.transport.sizes.get("~/mask"):
            self._check_output_sizes(result.mask.size)
        self.pub_mask.publish(array_to_image(result.mask, "mono8", job.header))
        self.pub_conf.publish(array_to_image(result.confidence, "mono8", job.header))
        self._publish_renderings(result)
        depth_wait_s = 0.0
        if self.points is not None:
            cloud, depth_wait_s = self.points.cloud_for(job.stamp, job.arrival_wall, result.mask, result.confidence,
                                                        job.header, lambda: self.running and self.pending is None)
            if cloud is not None:
                self.pub_points.publish(cloud)
        t3 = time.monotonic() - depth_wait_s
        with self.lock:
            self._publish_mode(self.core.record(result, t3, (t3 - t2) * 1e3))

    def _check_output_sizes(self, pixels: int) -> None:
        """Sizes of what the node publishes per frame (mono8 mask and confidence, bgr8 renderings, the
        16-byte-a-point cloud), known from the first mask."""
        sizes = {"~/mask": pixels, "~/confidence": pixels, "~/colored_mask": 3 * pixels, "~/overlay": 3 * pixels}
        if self.points is not None:
            sizes["~/points"] = 16 * pixels
        with self.lock:
            warning = self.transport.observe(sizes, ready=True)
        if warning:
            self.get_logger().warning(warning)

    def _publish_renderings(self, result: FrameResult) -> None:
        """~/colored_mask and ~/overlay, rendered only while someone listens."""
        want_colored = self.pub_colored.get_subscription_count() > 0
        want_overlay = self.pub_overlay.get_subscription_count() > 0
        if want_colored or want_overlay:
            colored = self.core.colored(result)
            if want_colored:
                self.pub_colored.publish(array_to_image(colored, "bgr8", result.job.header))
            if want_overlay:
                self.pub_overlay.publish(array_to_image(self.core.overlay(result, colored), "bgr8",
                                                        result.job.header))
