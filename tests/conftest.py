"""Shared fixtures: a tiny CSK-Net checkpoint and its exported model bundle,
built once per test session (ONNX export is the slow part), and the rule that
lets the same suite run where torch is not installed.

Runtime environments (`make test-matrix`: ROS 2 Jazzy on Python 3.10 / 3.12,
what a Jetson runs) have no torch. There, without any marker in the tests:
* a test module whose imports reach torch is left out at collection: its
  imports anywhere in the file (a test's local `from engines.export import
  ...` counts) and, transitively, the module-level imports of the project
  modules they name (csk_ros, engines, training, benchmarks, tests/*) are
  read with `ast`, nothing is imported;
* a test that uses a fixture needing torch (TORCH_FIXTURES) is deselected;
* `tiny_bundle` is the committed fixture bundle (tests/fixtures/tiny_bundle,
  written by tests/fixtures/make_fixtures.py from the same checkpoint) instead
  of a fresh export.
Both are reported (header line, "deselected" count, and a summary naming each
module and the import chain that needs torch), never counted as passed. With
torch installed nothing changes.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HAVE_TORCH = importlib.util.find_spec("torch") is not None
TORCH_ROOTS = {"torch", "torchvision", "torch_tensorrt", "onnxscript"}
TORCH_FIXTURES = {"tiny_checkpoint"}
FIXTURE_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "tiny_bundle"
_SEARCH = (ROOT, ROOT / "tests")


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for base in _SEARCH:
        for candidate in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


@functools.lru_cache(maxsize=None)
def _imported_names(path: Path, module_level_only: bool) -> tuple[str, ...]:
    """Absolute module names imported by `path`: at module level (and in class
    bodies, which run at import), or anywhere when `module_level_only` is False."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1]) if ROOT in path.parents else ""
    names: list[str] = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                names.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import inside a project package
                    parent = package.split(".")[:len(package.split(".")) - child.level + 1] if package else []
                    base = ".".join([*parent, base] if base else parent)
                names.append(base)
                names.extend(f"{base}.{alias.name}" for alias in child.names)  # "from pkg import module"
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            visit(child)

    visit(tree)
    return tuple(n for n in names if n)


_CHAINS: dict[str, list[str] | None] = {}


def torch_chain(name: str, _seen: set | None = None) -> list[str] | None:
    """The import chain from module `name` to torch (None: it does not need torch)."""
    if _seen is None:
        if name not in _CHAINS:
            _CHAINS[name] = torch_chain(name, set())
        return _CHAINS[name]
    seen = _seen
    if name.split(".")[0] in TORCH_ROOTS:
        return [name]
    if name in seen:
        return None
    seen.add(name)
    parent = name.rpartition(".")[0]
    if parent:  # importing a.b runs a/__init__.py first
        chain = torch_chain(parent, seen)
        if chain:
            return chain
    path = _module_file(name)
    for imported in _imported_names(path, module_level_only=True) if path else ():
        chain = torch_chain(imported, seen)
        if chain:
            return [name, *chain]
    return None


def test_file_torch_chain(path: Path) -> list[str] | None:
    for imported in _imported_names(path, module_level_only=False):
        chain = torch_chain(imported)
        if chain:
            return [path.name, *chain]
    return None


_LEFT_OUT: dict[str, list[str]] = {}
_DESELECTED: list[str] = []


def pytest_report_header(config):
    if not HAVE_TORCH:
        return ["torch is not installed: test modules whose imports reach torch are left out and tests using "
                f"{sorted(TORCH_FIXTURES)} deselected; tiny_bundle is the committed {FIXTURE_BUNDLE.name} fixture"]
    return None


def pytest_ignore_collect(collection_path, config):
    path = Path(collection_path)
    if HAVE_TORCH or path.suffix != ".py" or not path.name.startswith("test_"):
        return None
    chain = test_file_torch_chain(path)
    if chain:
        _LEFT_OUT[path.name] = chain
        return True
    return None


# tests/<folder>/ -> marker: select with -m (e.g. `pytest -m "not ros and not gpu"`)
FOLDER_MARKERS = {"unit": "unit", "ros": "ros", "offline": "offline", "deploy": "deploy", "gpu": "gpu"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(str(item.path)).parent.name
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])
        if HAVE_TORCH and (test_file_torch_chain(Path(str(item.path))) or
                           TORCH_FIXTURES & set(getattr(item, "fixturenames", ()))):
            item.add_marker("torch")
    if HAVE_TORCH:
        return
    keep, drop = [], []
    for item in items:
        (drop if TORCH_FIXTURES & set(getattr(item, "fixturenames", ())) else keep).append(item)
    if drop:
        _DESELECTED.extend(item.nodeid for item in drop)
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter):
    if HAVE_TORCH or not (_LEFT_OUT or _DESELECTED):
        return
    write = terminalreporter.write_line
    terminalreporter.section("left out: torch is not installed")
    for name, chain in sorted(_LEFT_OUT.items()):
        write(f"{name}: not collected ({' -> '.join(chain)})")
    if _DESELECTED:
        write(f"{len(_DESELECTED)} tests deselected (fixtures {sorted(TORCH_FIXTURES)} need torch)")

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


def export_tiny_bundle(checkpoint: Path, out: Path) -> Path:
    """The tiny bundle as the current exporter writes it (tests/fixtures/make_fixtures.py commits one)."""
    from engines.export import export_bundle

    return export_bundle(checkpoint, out, graphs=("fused", "ir_only"), log=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, request) -> Path:
    """A fused + ir_only bundle at 48x64. Tests that modify it must copy it first.
    Exported from `tiny_checkpoint`; without torch, a copy of the committed fixture."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    if not HAVE_TORCH:
        import shutil

        if not (FIXTURE_BUNDLE / "manifest.json").is_file():
            pytest.fail(f"{FIXTURE_BUNDLE} is missing: run `python tests/fixtures/make_fixtures.py` (needs torch)")
        return Path(shutil.copytree(FIXTURE_BUNDLE, out))
    return export_tiny_bundle(request.getfixturevalue("tiny_checkpoint"), out)


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
    from harness.stream_client import loopback_ros_env

    return loopback_ros_env()
