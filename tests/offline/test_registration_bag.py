"""`python -m csk_ros.calibrate check --bag`: the registration check on the EO/IR pairs of a recorded bag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from csk_ros.bag.images import from_images
from tests.support.rig_scenes import ir_view, scene

pytestmark = pytest.mark.offline
ROOT = Path(__file__).resolve().parents[2]
SIZE = (320, 256)


@pytest.fixture(scope="module")
def shifted_bag(tmp_path_factory) -> Path:
    """20 pairs whose EO content sits 12 px right of where IR sees it (co-aligned sizes, no homography)."""
    root = tmp_path_factory.mktemp("rig")
    (root / "eo").mkdir()
    (root / "ir").mkdir()
    for k in range(20):
        eo, radiance = scene(20 + k, size=SIZE)
        cv2.imwrite(str(root / "eo" / f"{k:03d}.png"), np.roll(eo, 12, axis=1)[:, :, ::-1])
        cv2.imwrite(str(root / "ir" / f"{k:03d}.png"), ir_view(radiance, np.eye(3), 20 + k, size=SIZE))
    assert from_images(root / "eo", root / "ir", root / "rig.mcap") == 20
    return root / "rig.mcap"


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "csk_ros.calibrate", "check", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_check_on_a_bag_measures_the_shift_and_a_corrected_homography_removes_it(shifted_bag, tmp_path):
    plain = run_check("--bag", str(shifted_bag), "--every", "2", "--homography", "0", "--json",
                      str(tmp_path / "plain.json"))
    assert plain.returncode == 0, plain.stderr
    report = json.loads((tmp_path / "plain.json").read_text())
    assert report["summary"]["pairs"] == 10 and report["summary"]["judged"] >= 8
    assert abs(report["summary"]["median_offset_px"] - 12) <= 2
    corrected = ["1", "0", "-12", "0", "1", "0", "0", "0", "1"]  # EO x -> x - 12: undoes the shift
    fixed = run_check("--bag", str(shifted_bag), "--homography", *corrected, "--json", str(tmp_path / "fixed.json"))
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads((tmp_path / "fixed.json").read_text())["summary"]["median_offset_px"] <= 2


def test_check_refuses_folders_and_a_bag_together_or_neither(shifted_bag, tmp_path):
    both = run_check("eo", "ir", "--bag", str(shifted_bag), "--homography", "0")
    neither = run_check("--homography", "0")
    missing = run_check("--bag", str(tmp_path / "nope.mcap"), "--homography", "0")
    for result in (both, neither, missing):
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "not both" in both.stderr and "--bag BAG" in neither.stderr
