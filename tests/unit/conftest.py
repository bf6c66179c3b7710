"""Fixtures of the ROS-free unit tests."""

import pytest

from csk_ros.backends import load_bundle
from csk_ros.logic.config import build_config
from csk_ros.pipeline import SegmentationPipeline


@pytest.fixture
def core(tiny_bundle):
    """The node's per-frame core on the tiny bundle with the default parameters (ONNX Runtime)."""
    segmenter = load_bundle(tiny_bundle, backend="onnxruntime")
    yield SegmentationPipeline(build_config({"model_dir": str(tiny_bundle)}), segmenter)
    segmenter.close()
