"""The TensorRT test double held to the real API (issue 26): every class, method, attribute and enum
member tests/support/fake_tensorrt/tensorrt.py defines must exist in `tensorrt-stubs` (generated
from the compiled TensorRT 10.13 bindings), with a call signature the real one accepts. A fake that
drifts from TensorRT would let the glue pass here and fail on a Jetson.

Both files are read with `ast`, nothing is imported. The stubs live in <venv>/typestubs (the
Makefile installs requirements/typestubs.txt there with --no-deps: their `tensorrt` dependency
cannot be installed without NVIDIA's servers).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parents[1] / "support" / "fake_tensorrt" / "tensorrt.py"
STUBS = Path(sys.prefix) / "typestubs"
BINDINGS = STUBS / "tensorrt_bindings" / "tensorrt.pyi"

# the fake's private classes stand in for these TensorRT classes
STANDS_IN_FOR = {"_ParserError": "ParserError", "_Network": "INetworkDefinition", "_Config": "IBuilderConfig",
                 "_Context": "IExecutionContext", "_Engine": "ICudaEngine"}
# the fake's own bookkeeping, which tests read and TensorRT does not have (nothing else may be missing)
FAKE_ONLY = {
    "module": {"MAGIC", "LOG"},
    "Builder": {"logger"}, "Runtime": {"logger"}, "OnnxParser": {"network", "errors"},
    "_Network": {"model", "strongly_typed"}, "_Config": {"flags", "pools"},
    "_Context": {"engine", "strategy", "addresses", "memory"}, "_Engine": {"info"},
}


@dataclass
class Api:
    """Members of one class: method name -> [(required, total, names)] per overload; other members."""
    methods: dict[str, list[tuple[int, float, tuple[str, ...]]]] = field(default_factory=dict)
    members: set[str] = field(default_factory=set)
    bases: list[str] = field(default_factory=list)


def _signature(fn: ast.FunctionDef) -> tuple[int, float, tuple[str, ...]]:
    """(required positional, total positional (inf with *args), names) without self."""
    args = [*fn.args.posonlyargs, *fn.args.args]
    if args and args[0].arg in ("self", "cls"):
        args = args[1:]
    required = len(args) - len(fn.args.defaults)
    return required, float("inf") if fn.args.vararg else len(args), tuple(a.arg for a in args)


def _targets(node) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = []
    for target in targets:
        for element in (target.elts if isinstance(target, ast.Tuple) else [target]):
            if isinstance(element, ast.Name):
                names.append(element.id)
            elif isinstance(element, ast.Attribute) and isinstance(element.value, ast.Name) and \
                    element.value.id == "self":
                names.append(element.attr)
    return names


def _class_api(cls: ast.ClassDef) -> Api:
    api = Api(bases=[b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases])
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            api.methods.setdefault(node.name, []).append(_signature(node))
            if node.name == "__init__":  # attributes the constructor sets
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Assign, ast.AnnAssign)):
                        api.members.update(_targets(inner))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            api.members.update(_targets(node))
        elif isinstance(node, ast.ClassDef):
            api.members.add(node.name)
    return api


def _classes(tree: ast.Module) -> dict[str, Api]:
    return {n.name: _class_api(n) for n in tree.body if isinstance(n, ast.ClassDef)}


def _with_bases(classes: dict[str, Api], name: str) -> Api:
    """A stub class's members including those it inherits from stub classes."""
    merged, api = Api(), classes[name]
    for base in api.bases:
        if base in classes:
            inherited = _with_bases(classes, base)
            merged.methods.update(inherited.methods)
            merged.members |= inherited.members
    merged.methods.update(api.methods)
    merged.members |= api.members
    return merged


def _module_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            names.update(_targets(node))
    return names


def _parse_stub(path: Path) -> ast.Module:
    """The stub's syntax tree. pybind11-stubgen writes a few signatures Python cannot parse (a parameter
    without default after defaulted ones, e.g. add_scale_nd): each such def keeps its name with a
    catch-all signature (marked unchecked), so only those few methods' signatures go unchecked."""
    lines = path.read_text().splitlines()
    for _ in range(50):
        try:
            return ast.parse("\n".join(lines))
        except SyntaxError as exc:
            at = (exc.lineno or 1) - 1
            fixed = re.sub(r"def (\w+)\(.*$", r"def \1(self, *unchecked):", lines[at])
            if fixed == lines[at]:
                raise
            lines[at] = fixed
    raise AssertionError(f"{path}: too many lines Python cannot parse")


@pytest.fixture(scope="module")
def stubs():
    if not BINDINGS.is_file():
        pytest.skip(f"tensorrt-stubs not installed in {STUBS} (`make venv` installs requirements/typestubs.txt "
                    "there with --no-deps)")
    return _parse_stub(STUBS / "tensorrt" / "__init__.pyi"), _classes(_parse_stub(BINDINGS))


@pytest.fixture(scope="module")
def fake():
    return ast.parse(FAKE.read_text())


def _compatible(fake_sig, stub_sigs) -> bool:
    """The fake accepts no call the real method refuses: it requires at least what one overload requires,
    takes no more than it takes, and its parameter names are that overload's (keyword calls work too)."""
    required, total, names = fake_sig
    return any(required >= r and total <= t and set(names) <= set(n) for r, t, n in stub_sigs)


def test_fake_module_names_exist_in_tensorrt(stubs, fake):
    module, _ = stubs
    real = _module_names(module)
    defined = {n for n in _module_names(fake) if not n.startswith("_")} - FAKE_ONLY["module"]
    defined -= {"ctypes", "json", "os", "np", "onnx"}  # the fake's own imports
    assert sorted(defined - real) == []


def test_fake_classes_members_and_signatures_match_the_stubs(stubs, fake):
    _, real = stubs
    problems = []
    for name, api in _classes(fake).items():
        if name == "_E":  # stands in for pybind11 enum values
            continue
        stub_name = STANDS_IN_FOR.get(name, name)
        if stub_name not in real:
            problems.append(f"class {name}: TensorRT has no {stub_name}")
            continue
        stub = _with_bases(real, stub_name)
        exempt = FAKE_ONLY.get(name, set())
        for member in sorted(api.members - exempt):
            if not member.startswith("_") and member not in stub.members and member not in stub.methods:
                problems.append(f"{name}.{member}: not in {stub_name}")
        for method, sigs in api.methods.items():
            if method.startswith("_") and method != "__init__" or name in STANDS_IN_FOR and method == "__init__":
                continue  # private helpers; TensorRT creates the stand-ins' objects itself
            if method not in stub.methods and method not in stub.members:
                problems.append(f"{name}.{method}(): not in {stub_name}")
            elif method in stub.methods and not _compatible(sigs[0], stub.methods[method]):
                problems.append(f"{name}.{method}{sigs[0]} does not match {stub_name}.{method} "
                                f"{stub.methods[method]}")
    assert problems == [], "\n".join(problems)


def test_the_check_sees_a_drifted_fake(stubs):
    """The comparison itself: a misspelt enum member, a made-up method and a wrong signature are caught."""
    _, real = stubs
    drifted = _classes(ast.parse("class BuilderFlag:\n    FP17 = 1\n"
                                 "class _Context:\n    def run(self, stream): ...\n"
                                 "    def set_tensor_address(self, name): ...\n"))
    assert "FP17" not in _with_bases(real, "BuilderFlag").members
    assert "run" not in _with_bases(real, "IExecutionContext").methods
    context = _with_bases(real, "IExecutionContext").methods["set_tensor_address"]
    assert not _compatible(drifted["_Context"].methods["set_tensor_address"][0], context)
