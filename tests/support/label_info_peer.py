"""Two ROS 2 processes exchanging vision_msgs/LabelInfo on a latched topic
(reliable + transient local, depth 1), for tests/test_label_info_wire.py.

    python label_info_peer.py run OUT.json   # start `pub`, wait, then a late `sub`; write what sub got
    python label_info_peer.py pub            # publish once, print PUBLISHED, stay up until stdin closes
    python label_info_peer.py sub OUT.json   # subscribe late, write the message + endpoint info as JSON

`run` keeps both children in its own process (and so in the network namespace
scripts/isolated_ros.sh gave it). vision_msgs must be importable (PYTHONPATH).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

TOPIC = "/csk_test/label_info"
CLASSES = [(0, "unlabeled"), (1, "car"), (2, "person"), (7, "color_cone"), (65535, "UNLABELED")]
THRESHOLD = 0.375
FRAME_ID = "ir_optical"
STAMP = (1234, 567890)


def _qos():
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def pub() -> int:
    import rclpy
    from vision_msgs.msg import LabelInfo, VisionClass

    rclpy.init()
    node = rclpy.create_node("label_info_pub")
    publisher = node.create_publisher(LabelInfo, TOPIC, _qos())
    msg = LabelInfo(class_map=[VisionClass(class_id=i, class_name=n) for i, n in CLASSES], threshold=THRESHOLD)
    msg.header.frame_id = FRAME_ID
    msg.header.stamp.sec, msg.header.stamp.nanosec = STAMP
    publisher.publish(msg)
    print("PUBLISHED", flush=True)
    sys.stdin.read()  # the parent closes stdin when the subscriber is done
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def sub(out: str, timeout: float = 10.0) -> int:
    import rclpy
    from vision_msgs.msg import LabelInfo

    rclpy.init()
    node = rclpy.create_node("label_info_sub")
    got = []
    node.create_subscription(LabelInfo, TOPIC, got.append, _qos())
    deadline = time.monotonic() + timeout
    while not got and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    endpoints = [{"node": e.node_name, "type": e.topic_type, "hash": str(e.topic_type_hash)}
                 for e in node.get_publishers_info_by_topic(TOPIC)]
    result = {"received": bool(got), "publishers": endpoints}
    if got:
        m = got[0]
        result.update(class_map=[[c.class_id, c.class_name] for c in m.class_map], threshold=m.threshold,
                      frame_id=m.header.frame_id, stamp=[m.header.stamp.sec, m.header.stamp.nanosec])
    with open(out, "w") as f:
        json.dump(result, f)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if got else 1


def run(out: str) -> int:
    publisher = subprocess.Popen([sys.executable, __file__, "pub"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
    try:
        line = publisher.stdout.readline()
        if line.strip() != "PUBLISHED":
            print(f"publisher did not start: {line!r}", file=sys.stderr)
            return 1
        time.sleep(0.5)  # the subscriber joins after the only publish: it gets it only if the topic is latched
        return subprocess.run([sys.executable, __file__, "sub", out], timeout=30).returncode
    finally:
        publisher.stdin.close()
        try:
            publisher.wait(10)
        except subprocess.TimeoutExpired:
            publisher.kill()
            publisher.wait()


if __name__ == "__main__":
    role = sys.argv[1]
    sys.exit({"pub": lambda: pub(), "sub": lambda: sub(sys.argv[2]), "run": lambda: run(sys.argv[2])}[role]())
