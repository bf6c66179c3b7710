"""Shared fixtures: a tiny CSK-Net checkpoint and its exported model bundle,
built once per test session (ONNX export is the slow part)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TINY_MODEL = {"depth": 10, "width": 8, "output_stride": 8, "aspp_channels": 16, "aspp_rates": [2, 4, 6],
              "dropout": 0.0}
BUNDLE_SIZE = (48, 64)


def tiny_config(**model) -> dict:
    from training.config import complete

    return complete({
        "data": {"name": "synthetic", "size": list(BUNDLE_SIZE), "num_train": 16, "num_val": 8, "num_test": 8,
                 "augment": {"crop": list(BUNDLE_SIZE)}},
        "model": dict(TINY_MODEL, **model),
        "train": {"batch_size": 4, "num_workers": 0, "eval_every": 2, "log_every": 1},
        "loss": {"kd_feature": 0.0, "kd_logit": 0.0, "kd_feature_ir_only": 0.0, "kd_logit_ir_only": 0.0,
                 "contrastive_samples": 64},
    })


def write_checkpoint(path: Path, seed: int = 0, **model) -> Path:
    import torch

    from training.checkpoint import save_checkpoint
    from training.model import build_model

    torch.manual_seed(seed)
    cfg = tiny_config(**model)
    net = build_model(cfg["model"])
    # Non-trivial BN statistics so the graphs do not collapse to one class.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    save_checkpoint(path, model_state=net.state_dict(), config=cfg, stage="csk", step=0, metrics={"miou": 0.1})
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_checkpoint) -> Path:
    """A fused + ir_only bundle at 48x64. Tests that modify it must copy it first."""
    from engines.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    return export_bundle(tiny_checkpoint, out, graphs=("fused", "ir_only"), log=lambda *_: None)


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    import shutil

    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dst)
    return dst


@pytest.fixture(scope="session")
def ros_env():
    """Environment for any process that touches ROS: loopback-only discovery,
    a per-session domain id and log dir (see scripts/isolated_ros.sh)."""
    from csk_ros.stream_client import loopback_ros_env

    return loopback_ros_env()
