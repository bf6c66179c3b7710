"""A Nav2-like consumer of the node's ~/points for the camera benchmark: SensorData QoS, counts clouds and
checks each is organized at mask size. Runs until SIGINT/--seconds, then writes JSON.

python benchmarks/points_listener.py --seconds 25 --out points.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", default="/segment_node/points")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    sys.path.insert(0, str(ROOT))
    from harness.stream_client import loopback_ros_env

    loopback_ros_env()
    rclpy.init()
    node = rclpy.create_node("points_listener")
    got = {"clouds": 0, "bytes": 0, "sizes": set(), "stamps": []}

    def on_cloud(msg):
        got["clouds"] += 1
        got["bytes"] += len(msg.data)
        got["sizes"].add((msg.width, msg.height, msg.point_step))
        got["stamps"].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    node.create_subscription(PointCloud2, args.topic, on_cloud, qos_profile_sensor_data)
    end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    Path(args.out).write_text(json.dumps({"clouds": got["clouds"], "bytes": got["bytes"],
                                          "sizes": sorted(got["sizes"]), "stamps": got["stamps"]}))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
