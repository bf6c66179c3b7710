"""csk_ros: RGB-thermal segmentation at run time (ROS 2 node, inference backends).

This package never imports torch, and its top level imports neither rclpy nor
onnxruntime, so training code can share its numpy helpers (e.g. thermal
scaling) without pulling in the runtime stack.
"""

__version__ = "0.1.0"
