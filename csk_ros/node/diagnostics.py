"""The segment node's /diagnostics: one DiagnosticStatus from a timer, in every lifecycle state, and at once
when an alarm starts or ends.

A mixin of SegmentNode (csk_ros/node/segment_node.py). The values come from the ROS-free core
(`SegmentationPipeline.diagnostics`: modes, rates, latencies, losses, rejections) plus what only the node
knows: the lifecycle state, the DDS transport check, ~/label_info, ~/points and the registration watch. The
timer runs from construction on, so an unconfigured or failed node reports too (a dead stream shows as
ERROR, never as a stale OK). Keys: docs/ros_interface.md (tests/unit/test_docs.py keeps them in step).
"""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

HEALTH_WATCH_PERIOD_S = 0.05  # how often the alarms are checked, so an error is published at once
ALARM_REPUBLISH_S = 0.2  # the fastest an alarm change re-publishes /diagnostics


class NodeDiagnostics:
    """The /diagnostics publisher, its timer and the alarm watch."""

    def _start_diagnostics(self) -> None:
        """At construction: the publisher and the periodic timer, for every lifecycle state."""
        self.last_diag_wall = 0.0
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # reports every state
        self.diag_timer = self.create_timer(float(self.get_parameter("diagnostics_period_s").value),
                                            self._on_diagnostics)

    def _restart_diagnostics_timer(self, period: float) -> None:
        self.destroy_timer(self.diag_timer)
        self.diag_timer = self.create_timer(period, self._on_diagnostics)

    def _create_alarm_watch(self):
        """At activate: the timer that publishes an alarm change before the next periodic report."""
        return self.create_timer(min(HEALTH_WATCH_PERIOD_S, self.config.diagnostics_period_s), self._watch_errors)

    def _watch_errors(self) -> None:
        """Publish /diagnostics at once when an alarm (IR stale, transport loss) starts or ends, not at the next
        tick; at most every ALARM_REPUBLISH_S so a loss fraction hovering at the limit cannot flood the topic."""
        with self.lock:
            alarms = self.core.alarms(self._ros_now())
        if alarms != self.core.alarms_published and time.monotonic() - self.last_diag_wall >= ALARM_REPUBLISH_S:
            self._on_diagnostics()

    def _on_diagnostics(self) -> None:
        now_ros, wall = self._ros_now(), time.monotonic()
        state = self.lifecycle_state()
        if state != "active":
            level, message, values = self._idle_diagnostics(state)
        else:
            cfg = self.config
            context = {"label_info": self.label_info_status, "publish_points": str(cfg.publish_points).lower(),
                       "lifecycle_state": state, **self.transport.diagnostics()}
            registration, warning = self.registration.diagnostics(wall)
            with self.lock:
                points = self.points
                extra = {**(points.diagnostics() if points is not None else {}), **registration}
                level, message, values, announcement = self.core.diagnostics(
                    now_ros, wall, context, extra, (warning,), points.rejected if points is not None else None)
                self._publish_mode(announcement)
                self.last_diag_wall = wall
        status = DiagnosticStatus(level=bytes([level]), name=f"{self.get_fully_qualified_name()}: segmentation",
                                  message=message, hardware_id=str(self.get_parameter("hardware_id").value),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)

    def _idle_diagnostics(self, state: str) -> tuple[int, str, dict[str, str]]:
        """A lifecycle node that is not active publishes no masks on purpose: OK, unless configure failed."""
        values = {"lifecycle_state": state, "mode": "inactive"}
        if self.core is not None:
            values["bundle"] = str(self.core.segmenter.bundle.root)
        if self.configure_error:
            values["configure_error"] = self.configure_error
            return DiagnosticStatus.ERROR[0], f"configure failed: {self.configure_error}", values
        return DiagnosticStatus.OK[0], f"{state} (lifecycle): no masks until activated", values
