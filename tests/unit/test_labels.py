"""Class labels for planners: the confidence policy, the plain class list and
vision_msgs/LabelInfo built against its interface definition."""

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from csk_ros.logic.config import build_config
from csk_ros.logic.labels import (
    NO_CLASS_ID,
    apply_confidence_policy,
    class_list_json,
    confidence_cutoff,
    label_info_message,
)

MFNET = ("unlabeled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump")


@pytest.mark.parametrize("threshold, cutoff", [(0.0, 0), (0.5, 128), (1.0, 255), (100 / 255, 100), (0.001, 1)])
def test_confidence_cutoff_matches_conf_over_255_below_threshold(threshold, cutoff):
    assert confidence_cutoff(threshold) == cutoff
    conf = np.arange(256)
    assert np.array_equal(conf < cutoff, conf / 255.0 < threshold - 1e-12)


def test_keep_policy_leaves_the_mask_and_unlabeled_replaces_low_confidence_pixels():
    mask = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    conf = np.array([[10, 127, 128], [200, 0, 255]], np.uint8)
    kept = apply_confidence_policy(mask, conf, 0.5, "keep", 0)
    assert np.array_equal(kept, mask)
    out = apply_confidence_policy(mask, conf, 0.5, "unlabeled", 0)
    assert out.dtype == np.uint8 and np.array_equal(out, [[0, 0, 3], [4, 0, 6]])
    assert np.array_equal(mask, [[1, 2, 3], [4, 5, 6]])  # input untouched
    assert np.array_equal(apply_confidence_policy(mask, conf, 0.0, "unlabeled", 0), mask)  # threshold 0: no-op
    assert NO_CLASS_ID == 255  # no class of any bundle: planners ignore the pixel
    assert np.array_equal(apply_confidence_policy(mask, conf, 0.5, "unlabeled"), [[255, 255, 3], [4, 255, 6]])
    with pytest.raises(ValueError):
        apply_confidence_policy(mask, conf, 0.5, "drop", 0)


def test_class_list_json_names_every_mask_id():
    payload = json.loads(class_list_json(MFNET, 0.4, "unlabeled", [(0, 0, 0)] * 9))
    assert [c["id"] for c in payload["classes"]] == list(range(9))
    assert [c["name"] for c in payload["classes"]] == list(MFNET)
    assert payload["low_confidence_id"] == 255 and payload["confidence_threshold"] == 0.4
    assert payload["low_confidence_policy"] == "unlabeled" and len(payload["palette_rgb"]) == 9


# vision_msgs/msg/VisionClass and LabelInfo as their interface files define them (vision_msgs 4.x, ROS 2):
#   VisionClass: uint16 class_id, string class_name
#   LabelInfo:   std_msgs/Header header, VisionClass[] class_map, float32 threshold
# Stand-ins with exactly those fields and types, used where vision_msgs is not installed (PyPI has none).
@dataclass
class VisionClass:
    class_id: int = 0
    class_name: str = ""

    def __post_init__(self):
        assert isinstance(self.class_id, int) and 0 <= self.class_id < 2 ** 16, self.class_id
        assert isinstance(self.class_name, str)


@dataclass
class LabelInfo:
    header: object = None
    class_map: list = field(default_factory=list)
    threshold: float = 0.0


def test_label_info_maps_every_mask_id_to_its_class_name():
    msg = label_info_message((LabelInfo, VisionClass), MFNET, 0.35)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(MFNET))
    assert all(isinstance(c, VisionClass) for c in msg.class_map)
    assert isinstance(msg.threshold, float) and msg.threshold == pytest.approx(0.35)


def test_node_parameters_for_labels_and_points_are_validated(tiny_bundle_dir="/tmp/bundle"):
    cfg = build_config({"model_dir": tiny_bundle_dir, "confidence_threshold": 0.3, "low_confidence_policy":
                        "unlabeled", "publish_points": True})
    assert (cfg.confidence_threshold, cfg.low_confidence_policy, cfg.publish_points) == (0.3, "unlabeled", True)
    defaults = build_config({"model_dir": tiny_bundle_dir})
    assert (defaults.confidence_threshold, defaults.low_confidence_policy, defaults.publish_points) == \
        (0.0, "keep", False)
    for bad, message in (({"confidence_threshold": 1.5}, "confidence_threshold"),
                         ({"low_confidence_policy": "drop"}, "low_confidence_policy"),
                         ({"depth_min_m": 5.0, "depth_max_m": 2.0}, "depth_min_m")):
        with pytest.raises(ValueError, match=message):
            build_config(dict(model_dir=tiny_bundle_dir, **bad))
