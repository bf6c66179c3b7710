"""A service on a hidden helper node with its own executor thread, for a callback that takes seconds
(`~/reload_model` loads a model) while the node's own executor must keep serving the cameras.

One SingleThreadedExecutor for the node itself keeps its callbacks serialised and fast: rclpy's
MultiThreadedExecutor costs enough per callback to lose bursts of small messages (the 200 malformed
messages of tests/ros/test_node_integration.py), so the slow service gets a thread of its own instead.
"""

from __future__ import annotations

import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from std_srvs.srv import Trigger


class ServiceHost:
    """`service_name` (already resolved, e.g. /segment_node/reload_model) served on its own thread."""

    def __init__(self, context, service_name: str, callback, srv_type=None):
        # use_global_arguments=False: the process's `-r __node:=segment_node` (launch) must not rename it too
        self.node = rclpy.create_node("_segment_node_services", context=context, use_global_arguments=False,
                                      start_parameter_services=False)
        self.node.create_service(srv_type or Trigger, service_name, callback)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, name="csk_services", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except (ExternalShutdownException, KeyboardInterrupt):
            pass
        except Exception:
            # SIGINT shuts the context down under this thread's wait (RCLError "context is not valid"):
            # the end of the process, not an error. Anything else while the context lives is one.
            if self.node.context.ok():
                raise

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.thread.join(timeout=2.0)
        self.node.destroy_node()
