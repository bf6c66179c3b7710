"""A stand-in camera driver: its own process, real MSRS frames, a fixed rate.

python benchmarks/camera_publisher.py --eo 640x480 --ir mono8_640x480 --transport raw --qos sensor_data \
    --rate 30 --seconds 20 --out sent.json

Publishes EO (bgr8, or JPEG on <eo/image>/compressed) and IR (mono8 / mono16,
or PNG on <ir/image>/compressed) with identical wall-clock stamps, like a
hardware-synchronised rig. Frames are prepared before the clock starts so the
publisher is never the bottleneck being measured. It waits until the node's
subscriptions have matched, streams, and writes what it sent to --out.
Its DDS configuration is whatever its environment gives it (the benchmark
sets FASTDDS_DEFAULT_PROFILES_FILE or not): the sending side is what counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "data" / "msrs_samples"
#: raw thermal counts of the 16-bit stand-in: a radiometric camera's typical offset and gain
MONO16_OFFSET, MONO16_GAIN = 20000, 40


def load_pairs(folder: Path = SAMPLES) -> list[tuple[np.ndarray, np.ndarray]]:
    """The registered MSRS pairs as (EO bgr 480x640x3, IR 480x640) uint8."""
    pairs = []
    for eo_path in sorted((folder / "eo").glob("*.png")):
        eo = cv2.imread(str(eo_path), cv2.IMREAD_COLOR)
        ir = cv2.imread(str(folder / "ir" / eo_path.name), cv2.IMREAD_GRAYSCALE)
        if eo is not None and ir is not None:
            pairs.append((eo, ir))
    if not pairs:
        raise SystemExit(f"no MSRS pairs under {folder} (expected eo/*.png and ir/*.png)")
    return pairs


def eo_frame(eo: np.ndarray, size: str) -> np.ndarray:
    """640x480 as is; 1280x720 = scaled x2 (1280x960) and centre-cropped to 720 rows."""
    if size == "640x480":
        return eo
    if size == "1280x720":
        big = cv2.resize(eo, (1280, 960), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(big[120:840])
    raise ValueError(f"unknown EO size {size}")


def ir_frame(ir: np.ndarray, kind: str) -> np.ndarray:
    """mono8_640x480 as is; mono16_640x512 = scaled x16/15 (683x512), centre-cropped to 640 columns, in raw counts."""
    if kind == "mono8_640x480":
        return ir
    if kind == "mono16_640x512":
        big = cv2.resize(ir, (683, 512), interpolation=cv2.INTER_LINEAR)[:, 21:661]
        return (MONO16_OFFSET + MONO16_GAIN * big.astype(np.uint16)).astype(np.uint16)
    raise ValueError(f"unknown IR kind {kind}")


def eo_to_ir_homography(eo_size: str, ir_kind: str) -> list[float] | None:
    """Row-major EO->IR pixel homography of the frames above (None: same geometry)."""
    # EO pixel -> original 640x480 pixel
    to_orig = np.eye(3) if eo_size == "640x480" else np.array([[0.5, 0, 0], [0, 0.5, 60.0], [0, 0, 1]])
    # original -> IR pixel
    if ir_kind == "mono8_640x480":
        to_ir = np.eye(3)
    else:
        s = 512 / 480
        to_ir = np.array([[s, 0, -21.0], [0, s, 0], [0, 0, 1]])
    h = to_ir @ to_orig
    return None if np.allclose(h, np.eye(3)) else [float(v) for v in h.reshape(-1)]


def depth_frame(height: int, width: int, array_to_image, camera_info_type):
    """A depth image registered to the IR camera (a tilted floor-like plane, 1.5 m at the top to 6 m, with a
    band of missing returns) and the IR camera_info (60 deg horizontal field of view)."""
    rows = np.linspace(6000, 1500, height, dtype=np.float32)[:, None]
    depth = np.repeat(rows, width, axis=1).astype(np.uint16)
    depth[:, : width // 20] = 0
    fx = (width / 2) / np.tan(np.radians(30))
    info = camera_info_type(width=width, height=height, distortion_model="plumb_bob",
                            k=[fx, 0.0, (width - 1) / 2, 0.0, fx, (height - 1) / 2, 0.0, 0.0, 1.0])
    return array_to_image(depth, "16UC1"), info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eo", default="640x480", choices=("640x480", "1280x720"))
    p.add_argument("--ir", default="mono8_640x480", choices=("mono8_640x480", "mono16_640x512"))
    p.add_argument("--transport", default="raw", choices=("raw", "compressed"))
    p.add_argument("--qos", default="sensor_data", choices=("sensor_data", "reliable"))
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--eo-stops-after", type=float, help="stop EO after this many seconds (IR goes on)")
    p.add_argument("--depth", action="store_true",
                   help="also publish depth/image (16UC1 mm, registered to IR: a tilted plane 1.5-6 m) and "
                        "ir/camera_info with every IR frame's stamp, for the node's ~/points")
    p.add_argument("--synthetic", action="store_true",
                   help="procedural frames (harness.stream_client.scene) instead of the MSRS samples: for tests")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import rclpy
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    sys.path.insert(0, str(ROOT))
    from csk_ros.imaging.ros_image import array_to_image
    from harness.stream_client import loopback_ros_env

    loopback_ros_env()
    frames = []
    if args.synthetic:
        from harness.stream_client import scene

        pairs = [scene(480, 640, 0.37 * k) for k in range(6)]
        pairs = [(cv2.cvtColor(eo, cv2.COLOR_RGB2BGR), ir) for eo, ir in pairs]
    else:
        pairs = load_pairs()
    for eo, ir in pairs:
        e, i = eo_frame(eo, args.eo), ir_frame(ir, args.ir)
        if args.transport == "raw":
            frames.append((array_to_image(e, "bgr8"), array_to_image(i, "mono16" if i.dtype == np.uint16 else "mono8")))
        else:
            eo_msg, ir_msg = CompressedImage(), CompressedImage()
            eo_msg.format = "bgr8; jpeg compressed bgr8"
            eo_msg.data = cv2.imencode(".jpg", e, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            ir_msg.format = ("mono16" if i.dtype == np.uint16 else "mono8") + "; png compressed"
            ir_msg.data = cv2.imencode(".png", i, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
            frames.append((eo_msg, ir_msg))
    sizes = [len(bytes(frames[0][0].data)), len(bytes(frames[0][1].data))]

    rclpy.init()
    node = rclpy.create_node("camera_publisher")
    qos = qos_profile_sensor_data if args.qos == "sensor_data" else QoSProfile(depth=5)
    msg_type = type(frames[0][0])
    suffix = "/compressed" if args.transport == "compressed" else ""
    pub_eo = node.create_publisher(msg_type, "eo/image" + suffix, qos)
    pub_ir = node.create_publisher(msg_type, "ir/image" + suffix, qos)
    depth_msg = info_msg = None
    if args.depth:
        ir_h, ir_w = ir_frame(pairs[0][1], args.ir).shape[:2]
        depth_msg, info_msg = depth_frame(ir_h, ir_w, array_to_image, CameraInfo)
        pub_depth = node.create_publisher(Image, "depth/image", qos)
        pub_info = node.create_publisher(CameraInfo, "ir/camera_info", qos)
    deadline = time.monotonic() + 60
    while not (pub_eo.get_subscription_count() and pub_ir.get_subscription_count()):
        if time.monotonic() > deadline:
            raise SystemExit("camera_publisher: no subscriber matched within 60 s")
        time.sleep(0.05)
    time.sleep(1.0)  # let every reader finish matching: best effort loses what is sent before

    period = 1.0 / args.rate
    n = int(round(args.seconds * args.rate))
    eo_stop = None if args.eo_stops_after is None else int(round(args.eo_stops_after * args.rate))
    sent_eo, sent_ir, late = [], [], 0
    start = next_t = time.monotonic()
    for k in range(n):
        eo_msg, ir_msg = frames[k % len(frames)]
        t = time.time()
        for msg in (eo_msg, ir_msg):
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int(round((t - int(t)) * 1e9)) % 1_000_000_000
        eo_msg.header.frame_id, ir_msg.header.frame_id = "eo_optical", "ir_optical"
        if eo_stop is None or k < eo_stop:
            pub_eo.publish(eo_msg)
            sent_eo.append(t)
        if depth_msg is not None:
            depth_msg.header = info_msg.header = ir_msg.header
            pub_depth.publish(depth_msg)
            pub_info.publish(info_msg)
        pub_ir.publish(ir_msg)
        sent_ir.append(t)
        next_t += period
        delay = next_t - time.monotonic()
        late += delay < 0
        time.sleep(max(0.0, delay))
    elapsed = time.monotonic() - start
    Path(args.out).write_text(json.dumps({
        "eo_stamps": sent_eo, "ir_stamps": sent_ir, "payload_bytes": {"eo": sizes[0], "ir": sizes[1]},
        "late_ticks": late, "elapsed_s": elapsed, "args": vars(args)}))
    time.sleep(0.5)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
