"""The runtime's layout holds (issue "The node as one package"): a short package top level, the node's parts
in csk_ros/node/ with SegmentNode only wiring, nothing in backends/ importing back up, and every older import
path and `python -m` name still the same module, so users' scripts, launch files and the executable keep
working."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "csk_ros"
ALIASES = {  # older name -> the module it now is
    "csk_ros.segment_node": "csk_ros.node.segment_node",
    "csk_ros.dds_profile": "csk_ros.tools.dds_profile",
    "csk_ros.nav2_params": "csk_ros.tools.nav2_params",
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_package_top_level_holds_at_most_eight_modules():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 8, modules


def test_nothing_in_backends_imports_back_up():
    """backends/ may use the bundle contract (which imports no backend) and itself, nothing else of csk_ros."""
    for path in sorted((PACKAGE / "backends").glob("*.py")):
        ours = {m for m in imported_modules(path) if m.split(".")[0] == "csk_ros"}
        outside = {m for m in ours if not m.startswith("csk_ros.backends") and m != "csk_ros.bundle"}
        assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}"
    assert not any(m.startswith("csk_ros.backends") for m in imported_modules(PACKAGE / "bundle.py"))


def test_segment_node_is_wiring_of_at_most_250_lines():
    tree = ast.parse((PACKAGE / "node" / "segment_node.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SegmentNode")
    assert node.end_lineno - node.lineno + 1 <= 250


def test_the_node_package_imports_no_ros_until_a_ros_part_is_asked_for():
    """csk_ros/node/__init__.py is empty of imports: its ROS-free parts load without rclpy (unit tests)."""
    assert imported_modules(PACKAGE / "node" / "__init__.py") == set()
    for name in ("points_output.py", "registration_watch.py"):
        roots = {m.split(".")[0] for m in imported_modules(PACKAGE / "node" / name)}
        assert not roots & {"rclpy", "rcl_interfaces", "sensor_msgs"}, name


@pytest.mark.parametrize("old,new", sorted(ALIASES.items()))
def test_an_older_import_path_is_the_moved_module_itself(old, new):
    if old == "csk_ros.segment_node":
        pytest.importorskip("rclpy")
    assert importlib.import_module(old) is importlib.import_module(new)


def test_the_segment_node_executable_runs_the_nodes_main():
    pytest.importorskip("rclpy")
    entry = re.search(r'"segment_node = \{PACKAGE\}\.([\w.]+):(\w+)"', (ROOT / "setup.py").read_text())
    assert entry, "setup.py names no segment_node console script"
    target = getattr(importlib.import_module(f"csk_ros.{entry.group(1)}"), entry.group(2))
    assert target is importlib.import_module("csk_ros.segment_node").main
