"""The segment node's ~/reload_model (std_srvs/Trigger): a new model without a restart.

A mixin of SegmentNode (csk_ros/node/segment_node.py). The callback runs on the service host's own thread
(csk_ros/node/service_host.py), so loading seconds of model never stalls the cameras' callbacks. The new
bundle is loaded and proved beside the running one (csk_ros.backends.replacement.load_checked), then swapped
in between two frames under `frame_lock` (which the worker holds for one frame) and `lock`; a bad bundle
leaves the old model serving, and the answer says why.
"""

from __future__ import annotations

import time

from csk_ros.backends.replacement import describe_change, load_checked
from csk_ros.bundle import BundleError
from csk_ros.logic.config import build_config
from csk_ros.node.parameters import current_values

STARTUP_ERRORS = (ValueError, BundleError, OSError, RuntimeError)  # a bad config or bundle: one line, not a trace


class ModelSwap:
    """`_on_reload_model`, served by SegmentNode's ServiceHost; one reload at a time (`reload_lock`)."""

    def _on_reload_model(self, request, response):
        """Load the bundle at model_dir beside the running one, prove it, swap it in between two frames.
        A bad bundle leaves the old model serving and the answer says why."""
        if self.core is None:
            response.success, response.message = False, "not configured: nothing to reload (configure first)"
            return response
        if not self.reload_lock.acquire(blocking=False):
            response.success, response.message = False, "a reload is already in progress"
            return response
        try:
            t0 = time.monotonic()
            old_root = self.core.segmenter.bundle.root
            try:
                config = build_config(current_values(self))
                segmenter = load_checked(config, log=self.get_logger().warning)
            except STARTUP_ERRORS as exc:
                self.get_logger().error(f"~/reload_model refused, still serving {old_root}: {exc}")
                response.success, response.message = False, f"kept {old_root}: {exc}"
                return response
            with self.frame_lock, self.lock:  # between two frames
                old = self.core.swap_segmenter(segmenter)
                self.config = config
                self.transport.sizes.pop("~/mask", None)  # output sizes are re-checked on the next mask
            change = describe_change(old, segmenter)
            old.close()
            if change.classes_changed:
                self._publish_labels()
            bundle = segmenter.bundle
            response.success = True
            response.message = (f"serving {bundle.root} ({bundle.height}x{bundle.width}, {len(bundle.class_names)} "
                                f"classes{', classes changed' if change.classes_changed else ''}) on "
                                f"{segmenter.backend_name}, loaded in {time.monotonic() - t0:.2f} s")
            self.get_logger().info(f"~/reload_model: {response.message}")
            return response
        finally:
            self.reload_lock.release()
