"""The documentation stays true to the code: generated tables equal their sources, every /diagnostics
key the node publishes is documented, every link resolves inside the repository."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from csk_ros.logic.config import build_config, parameter_table_markdown
from csk_ros.logic.modes import reasons_table_markdown

ROOT = Path(__file__).resolve().parents[2]
INTERFACE = ROOT / "docs" / "ros_interface.md"


def generated_block(text: str, command: str) -> str:
    match = re.search(rf"<!-- generated: {re.escape(command)} -->\n(.*?)<!-- end generated -->", text, re.S)
    assert match, f"no generated block for {command!r} in {INTERFACE.name}"
    return match.group(1)


def test_the_parameter_table_is_the_one_the_node_declares():
    text = INTERFACE.read_text()
    assert generated_block(text, "python -m csk_ros.logic.config") == parameter_table_markdown(), \
        "docs/ros_interface.md's parameter table is stale: paste `python -m csk_ros.logic.config` into it"


def test_the_reason_table_holds_every_reason():
    command = 'python -c "from csk_ros.logic.modes import reasons_table_markdown as r; print(r())"'
    assert generated_block(INTERFACE.read_text(), command) == reasons_table_markdown(), \
        "docs/ros_interface.md's reason table is stale: paste reasons_table_markdown() into it"


def documented_key(key: str, text: str) -> bool:
    """A key is documented by name (`key`, or `prefix_ms_p50/p95`) or by its pattern (`rejected_<...>`)."""
    if f"`{key}`" in text:
        return True
    for pattern in re.findall(r"`([a-z_]+)<[a-z_]+>(?:_[a-z_<>]+)?`", text):
        if key.startswith(pattern):
            return True
    for stem in re.findall(r"`([a-z_]+_ms)_p50/p95`", text):
        if key in (f"{stem}_p50", f"{stem}_p95"):
            return True
    return False


def test_every_diagnostics_key_is_documented(tiny_bundle):
    from csk_ros.backends import load_bundle
    from csk_ros.imaging.ros_image import ImageDecodeError
    from csk_ros.node.points_output import PointsOutput
    from csk_ros.node.registration_watch import RegistrationWatch
    from csk_ros.pipeline import IrJob, SegmentationPipeline

    segmenter = load_bundle(tiny_bundle, backend="onnxruntime")
    core = SegmentationPipeline(build_config({"model_dir": str(tiny_bundle)}), segmenter)
    head = SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0), frame_id="ir")
    core.eo_rejected(head, 1.0, ImageDecodeError("corrupt", "x"))
    job = IrJob(head, np.zeros((48, 64), np.uint8), 1.0, 1.0, 1.0, 0.1)
    core.ir_frame(job, 0.1)
    result = core.infer(job, core.pairing(job, 1.0, "ir_only"), core.decide(1.0))
    core.record(result, 1.0, 0.0)
    core.counts["ir_dropped"] += 1
    points = PointsOutput(0.1, 10.0, 0.05, 1.0, None, None)
    points.rejected["depth_encoding"] += 1
    points.counts["points_published"] += 1
    watch = RegistrationWatch(0.0, 6.0, None)
    watch.period_s = 1.0  # its keys as while running, without its thread
    registration, _ = watch.diagnostics(2.0)
    context = {"label_info": "published", "publish_points": "true", "lifecycle_state": "active"}
    _, _, values, _ = core.diagnostics(1.0, 1.0, context, {**points.diagnostics(), **registration}, (),
                                       points.rejected)
    segmenter.close()
    text = INTERFACE.read_text()
    missing = [k for k in values if not documented_key(k, text)]
    assert not missing, f"/diagnostics keys not in docs/ros_interface.md: {missing}"
    assert len(values) > 40


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_relative_link_resolves_inside_the_repository():
    broken = []
    for path in markdown_files():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.exists() or ROOT not in (resolved, *resolved.parents):
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_readme_is_short_and_links_nothing_outside_the_repository():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "../shared" not in text and "DESIGN.md" not in text
    assert "make demo" in text and "make test" in text
