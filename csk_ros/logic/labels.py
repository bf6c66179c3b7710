"""Class labels for planners: the confidence policy applied to masks, the
vision_msgs/LabelInfo message (Nav2's semantic segmentation layer needs it
before it uses any mask) and a plain-JSON class list for installs without
vision_msgs. Pure Python / numpy; ROS message types are imported lazily.
"""

from __future__ import annotations

import json
import math

import numpy as np

# Mask value of a low-confidence pixel under `low_confidence_policy: unlabeled`: an id no class has, so a
# planner ignores the pixel (Nav2's layer skips ids missing from LabelInfo). Not the bundle's own
# "unlabeled" class: that is a prediction like any other, and a costmap may well give it a cost.
NO_CLASS_ID = 255


def confidence_cutoff(threshold: float) -> int:
    """Smallest confidence byte (0-255) that is NOT below `threshold` (0-1): conf/255 < t <=> conf < cutoff."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"confidence threshold must be within [0, 1], got {threshold}")
    return int(math.ceil(threshold * 255.0 - 1e-9))


def apply_confidence_policy(mask: np.ndarray, confidence: np.ndarray, threshold: float, policy: str,
                            unlabeled: int = NO_CLASS_ID) -> np.ndarray:
    """The mask to publish: unchanged for `keep` (or a zero threshold); for `unlabeled`, pixels whose
    confidence is below the threshold hold `unlabeled` (255). Never modifies the input."""
    if policy not in ("keep", "unlabeled"):
        raise ValueError(f"low_confidence_policy must be keep or unlabeled, got {policy!r}")
    cutoff = confidence_cutoff(threshold)
    if policy == "keep" or cutoff == 0:
        return mask
    return np.where(confidence < cutoff, np.uint8(unlabeled), mask).astype(np.uint8, copy=False)


def class_list_json(class_names, threshold: float, policy: str, palette=None) -> str:
    """The class list every install can read (std_msgs/String on ~/classes): ids are the mask values."""
    payload = {"classes": [{"id": i, "name": str(n)} for i, n in enumerate(class_names)],
               "low_confidence_id": NO_CLASS_ID, "confidence_threshold": threshold,
               "low_confidence_policy": policy}
    if palette is not None:
        payload["palette_rgb"] = [list(c) for c in palette]
    return json.dumps(payload)


def load_label_info_types():
    """(LabelInfo, VisionClass) from vision_msgs with their type support loaded, or raise ImportError with
    what to install. The .msg module is pure Python and imports even where its compiled type support does
    not load (another Python, /opt/ros mixed with a venv's wheels); the publisher would then fail later."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass

        for msg_type in (LabelInfo, VisionClass):
            type(msg_type).__import_type_support__()
            if getattr(type(msg_type), "_TYPE_SUPPORT", None) is None:
                raise ImportError(f"{msg_type.__name__}'s compiled type support did not load")
    except ImportError as exc:
        raise ImportError(f"vision_msgs is not importable ({exc}); install ros-<distro>-vision-msgs to get "
                          "~/label_info (the class list is on ~/classes meanwhile)") from exc
    return LabelInfo, VisionClass


def label_info_message(types, class_names, threshold: float, header=None):
    """vision_msgs/LabelInfo: one VisionClass per mask id, `threshold` = the confidence threshold (0-1)."""
    label_info_type, vision_class_type = types
    msg = label_info_type()
    if header is not None:
        msg.header = header
    msg.class_map = [vision_class_type(class_id=i, class_name=str(name)) for i, name in enumerate(class_names)]
    msg.threshold = float(threshold)
    return msg
