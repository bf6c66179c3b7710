"""vision_msgs/LabelInfo over real ROS 2 (loopback only), with the interface
package generated from tests/support/vision_msgs by build_vision_msgs.py:
the type hash is the real package's, and a latched (reliable + transient
local) LabelInfo reaches a subscriber in another process that joins after the
only publish, with its content intact."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import label_info_peer as peer
from tests.support.build_vision_msgs import ensure_vision_msgs, missing_toolchain, type_hash

ROOT = Path(__file__).resolve().parents[2]

# RIHS01 of vision_msgs/msg/LabelInfo as rosidl_generator_type_description (Kilted, 4.9.5) computes it from the
# upstream ros-perception/vision_msgs LabelInfo.msg + VisionClass.msg (ros2 branch, 4.1.1). Comments and the
# `vision_msgs/` prefix on the nested type do not enter the hash; names, types and order of fields do.
REAL_LABEL_INFO_HASH = "RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783"


@pytest.fixture(scope="module")
def vision_msgs_dir() -> Path:
    path = ensure_vision_msgs()
    if path is None:
        pytest.skip(missing_toolchain())
    return path


def test_generated_label_info_has_the_real_type_hash(vision_msgs_dir):
    assert type_hash(vision_msgs_dir) == REAL_LABEL_INFO_HASH


def test_latched_label_info_reaches_a_late_subscriber_in_another_process(vision_msgs_dir, ros_env, tmp_path):
    env = dict(ros_env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(vision_msgs_dir), str(ROOT), env.get("PYTHONPATH")) if p)
    out = tmp_path / "received.json"
    proc = subprocess.run([str(ROOT / "scripts" / "isolated_ros.sh"), sys.executable, peer.__file__, "run", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["received"]
    assert got["class_map"] == [list(c) for c in peer.CLASSES]
    assert got["threshold"] == peer.THRESHOLD  # exact in float32
    assert got["frame_id"] == peer.FRAME_ID and got["stamp"] == list(peer.STAMP)
    # What the middleware announces: the real type name and hash, from the compiled type support.
    # (The publisher's node name is left out: discovery may not have delivered it yet, _NODE_NAME_UNKNOWN_.)
    assert [(p["type"], p["hash"]) for p in got["publishers"]] == [("vision_msgs/msg/LabelInfo",
                                                                    REAL_LABEL_INFO_HASH)]
