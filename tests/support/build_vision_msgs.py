"""Build a wire-compatible `vision_msgs` Python interface package (LabelInfo and
VisionClass only) from the ROS 2 wheels in the running interpreter's prefix.

`vision_msgs` is not published as a wheel, so tests generate it: the .msg files
in tests/support/vision_msgs/msg/ (field lines identical to
ros-perception/vision_msgs, so the type names, RIHS01 type hashes and DDS type
names are the real package's) go through the rosidl generators that ship as
wheels (rosidl_adapter, rosidl_generator_type_description, rosidl_generator_c,
rosidl_typesupport_fastrtps_c / introspection_c / c, rosidl_generator_py), and
gcc/g++ compile the sources against the headers and libraries in
`sys.prefix/include` and `sys.prefix/lib`. No ament_cmake, no CMake.

The result is cached under `.cache/vision_msgs/<key>/` (or
$CSK_VISION_MSGS_CACHE/<key>/; key: the .msg files, this script, the Python
version, the prefix and the rosidl wheel versions) and rebuilt only when the
key changes: about 3.5 s cold on 2 CPU cores, 0.2 s cached. Every shared library carries an rpath
($ORIGIN and the prefix's lib/), so nothing needs LD_LIBRARY_PATH; the only
thing a process needs is the returned directory on sys.path / PYTHONPATH.

    from tests.support.build_vision_msgs import ensure_vision_msgs, missing_toolchain
    path = ensure_vision_msgs()        # Path, or None when the toolchain is missing
    if path is None:
        pytest.skip(missing_toolchain())
    env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])

Command line: `python tests/support/build_vision_msgs.py [--cache-dir DIR] [--force]`
prints the directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib import metadata
from pathlib import Path

PACKAGE = "vision_msgs"
MESSAGES = ("VisionClass", "LabelInfo")
DEPENDENCIES = ("std_msgs", "builtin_interfaces")  # interface packages the .msg files use
TYPESUPPORTS = ("rosidl_typesupport_fastrtps_c", "rosidl_typesupport_introspection_c")
GENERATOR_MODULES = ("rosidl_adapter", "rosidl_cli", "rosidl_generator_type_description", "rosidl_generator_c",
                     "rosidl_generator_py", "rosidl_typesupport_c", "rosidl_typesupport_fastrtps_c",
                     "rosidl_typesupport_introspection_c", "numpy")

HERE = Path(__file__).resolve().parent
MSG_DIR = HERE / PACKAGE / "msg"
ROOT = HERE.parents[1]
DEFAULT_CACHE = ROOT / ".cache" / PACKAGE

_reason: str | None = None


def _prefix() -> Path:
    return Path(sys.prefix)


def _compilers() -> tuple[str | None, str | None]:
    return (shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc"),
            shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++"))


def missing_toolchain() -> str | None:
    """Why the package cannot be built here, or None when everything needed is present."""
    prefix = _prefix()
    missing = [m for m in GENERATOR_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        return f"vision_msgs cannot be generated: Python modules missing from {sys.executable}: {', '.join(missing)}"
    cc, cxx = _compilers()
    if not cc or not cxx:
        return "vision_msgs cannot be generated: no C and C++ compiler (gcc/g++ or cc/c++) on PATH"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return f"vision_msgs cannot be generated: Python.h not found in {sysconfig.get_paths()['include']}"
    needed = [prefix / "share" / p / "msg" / "Header.idl" for p in ("std_msgs",)]
    needed += [prefix / "share" / g / "resource" for g in ("rosidl_generator_c", "rosidl_generator_py",
                                                           "rosidl_typesupport_c", *TYPESUPPORTS)]
    needed += [prefix / "include" / "std_msgs", prefix / "lib" / "libstd_msgs__rosidl_generator_py.so",
               prefix / "lib" / "librosidl_typesupport_fastrtps_c.so"]
    absent = [str(p) for p in needed if not p.exists()]
    if absent:
        return f"vision_msgs cannot be generated: the ROS 2 wheels' prefix {prefix} lacks {', '.join(absent)}"
    return None


def cache_key() -> str:
    h = hashlib.sha256()
    for name in MESSAGES:
        h.update((MSG_DIR / f"{name}.msg").read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(f"{sys.version}|{sys.prefix}|{sysconfig.get_config_var('EXT_SUFFIX')}".encode())
    versions = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                      if (d.metadata["Name"] or "").lower().replace("_", "-").startswith(
                          ("ros-rosidl", "ros-std-msgs", "ros-builtin-interfaces", "ros-rclpy", "ros-fastcdr")))
    h.update("\n".join(versions).encode())
    return h.hexdigest()[:16]


def ensure_vision_msgs(cache_dir: str | os.PathLike | None = None, force: bool = False,
                       log=None) -> Path | None:
    """The directory to put on sys.path / PYTHONPATH so that `import vision_msgs.msg`
    gives LabelInfo and VisionClass; built on first use, cached afterwards.
    None when the toolchain is missing (`missing_toolchain()` says why). A failing
    build raises RuntimeError with the compiler/generator output."""
    global _reason
    _reason = missing_toolchain()
    if _reason is not None:
        return None
    cache = Path(cache_dir) if cache_dir is not None else Path(os.environ.get("CSK_VISION_MSGS_CACHE", DEFAULT_CACHE))
    final = cache / cache_key()
    python_dir = final / "python"
    if (final / "COMPLETE").is_file() and not force:
        os.utime(final / "COMPLETE")  # last use, for _prune
        return python_dir
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / ".gitignore").exists():
        (cache / ".gitignore").write_text("# build cache of tests/support/build_vision_msgs.py\n*\n")
    work = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=cache))
    try:
        work.chmod(0o755)
        _build(work, log or (lambda *_: None))
        (work / "COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
        if force and final.exists():
            shutil.rmtree(final)
        try:
            os.rename(work, final)
        except OSError:
            if not (final / "COMPLETE").is_file():  # another process won the race only if it finished
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(cache, keep=final.name)
    return python_dir


def _prune(cache: Path, keep: str) -> None:
    """Drop builds unused for a week (other keys: older wheels or .msg files; other venvs share the cache,
    so a current build of another key stays) and temp dirs abandoned for an hour."""
    now = time.time()
    for entry in cache.iterdir():
        if not entry.is_dir() or entry.name == keep:
            continue
        stamp = entry / "COMPLETE"
        age = now - (stamp if stamp.is_file() else entry).stat().st_mtime
        if age > (3600 if ".tmp-" in entry.name or not stamp.is_file() else 7 * 86400):
            shutil.rmtree(entry, ignore_errors=True)


def _run(cmd: list[str], log, env: dict | None = None) -> None:
    log(" ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        target = cmd[cmd.index("-o") + 1] if "-o" in cmd else " ".join(cmd[1:3])
        raise RuntimeError(f"vision_msgs build step failed ({proc.returncode}) for {target}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _build(work: Path, log) -> None:
    prefix = _prefix()
    gen = work / "gen"
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix)] + [p for p in env.get("AMENT_PREFIX_PATH", "").split(
        os.pathsep) if p])
    # Generation runs in a child interpreter: the generators print, set up logging and need AMENT_PREFIX_PATH.
    _run([sys.executable, str(Path(__file__).resolve()), "--generate", str(gen)], log, env=env)
    info = json.loads((gen / "info.json").read_text())

    cc, cxx = _compilers()
    pkg_dir = work / "python" / PACKAGE
    (pkg_dir / "msg").mkdir(parents=True)
    lib_dir = prefix / "lib"
    includes = [gen / g for g in ("c", "fastrtps_c", "introspection_c", "py")]
    # ROS packages install headers to include/<pkg>/<pkg>/..., vendored ones (fastcdr) to include/<pkg>/...
    includes += sorted(p for p in (prefix / "include").iterdir() if p.is_dir() and not p.name.startswith("python"))
    includes.append(prefix / "include")
    includes += [Path(sysconfig.get_paths()["include"]), Path(info["numpy_include"])]
    common = ["-shared", "-fPIC", "-O1", "-w", *[f"-I{p}" for p in includes], f"-L{lib_dir}", f"-L{pkg_dir}",
              "-Wl,--no-as-needed", "-Wl,-rpath,$ORIGIN", f"-Wl,-rpath,{lib_dir}"]
    deps_c = [f"-l{d}__rosidl_generator_c" for d in DEPENDENCIES]
    runtime = ["-lrosidl_runtime_c", "-lrcutils"]

    def lib(name: str, compiler: str, sources: list[Path], libs: list[str], out: Path | None = None) -> None:
        target = out or pkg_dir / f"lib{PACKAGE}__{name}.so"
        # Python-facing code resolves the C API from the interpreter; everything else must link completely.
        extra = [f"-Wl,-soname,{target.name}"] if out is None else []
        extra += [] if name in ("rosidl_generator_py",) or out is not None else ["-Wl,-z,defs"]
        _run([compiler, *common, *extra, "-o", str(target), *map(str, sources), *libs], log)

    def sources(sub: str, pattern: str) -> list[Path]:
        found = sorted((gen / sub / PACKAGE / "msg").glob(pattern))
        if not found:
            raise RuntimeError(f"vision_msgs generation produced no {sub}/{pattern}")
        return found

    self_c = f"-l{PACKAGE}__rosidl_generator_c"
    lib("rosidl_generator_c", cc, sources("c", "detail/*.c"), [*deps_c, *runtime])
    lib("rosidl_typesupport_introspection_c", cc, sources("introspection_c", "detail/*.c"),
        [self_c, *[f"-l{d}__rosidl_typesupport_introspection_c" for d in DEPENDENCIES],
         "-lrosidl_typesupport_introspection_c", *deps_c, *runtime])
    lib("rosidl_typesupport_fastrtps_c", cxx, sources("fastrtps_c", "detail/*.cpp"),
        [self_c, *[f"-l{d}__rosidl_typesupport_fastrtps_c" for d in DEPENDENCIES],
         "-lrosidl_typesupport_fastrtps_c", "-lrosidl_typesupport_fastrtps_cpp", "-lfastcdr", "-lrmw",
         "-lrosidl_dynamic_typesupport", *deps_c, *runtime])
    # The typesupport_c dispatcher dlopen()s lib<pkg>__<typesupport>.so by bare name; linking them here
    # (no-as-needed) loads them first, so dlopen finds them by soname without LD_LIBRARY_PATH.
    lib("rosidl_typesupport_c", cxx, sources("typesupport_c", "*.cpp"),
        [self_c, *[f"-l{PACKAGE}__{ts}" for ts in TYPESUPPORTS], "-lrosidl_typesupport_c", "-lrcpputils",
         *deps_c, *runtime])
    lib("rosidl_generator_py", cc, sources("py", "*_s.c"),
        [self_c, f"-l{PACKAGE}__rosidl_typesupport_c", *[f"-l{d}__rosidl_generator_py" for d in DEPENDENCIES],
         *deps_c, *runtime])
    ext_suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for ts in ("rosidl_typesupport_c", *TYPESUPPORTS):
        src = gen / "py" / PACKAGE / f"_{PACKAGE}_s.ep.{ts}.c"
        lib(ts, cc, [src], [f"-l{PACKAGE}__rosidl_generator_py", f"-l{PACKAGE}__{ts}", self_c,
                            f"-l{PACKAGE}__rosidl_typesupport_c", f"-l{ts}",
                            *deps_c, *runtime],
            out=pkg_dir / f"{PACKAGE}_s__{ts}{ext_suffix}")
    for py in (gen / "py" / PACKAGE / "msg").glob("*.py"):
        shutil.copy2(py, pkg_dir / "msg" / py.name)
    (pkg_dir / "__init__.py").write_text("")
    shutil.copytree(gen / "type_description", work / "share" / PACKAGE)  # msg/*.json, with the RIHS01 hashes
    shutil.copytree(gen / "idl", work / "share" / PACKAGE, dirs_exist_ok=True)
    shutil.rmtree(gen)


def _generate(out: Path) -> None:
    """Child-process half of the build: .msg -> .idl -> type hashes -> C / typesupport / Python sources."""
    import logging

    import numpy
    from rosidl_adapter.msg import convert_msg_to_idl
    from rosidl_cli.command.hash.api import generate_type_hashes
    from rosidl_generator_c.cli import GenerateC
    from rosidl_generator_py.cli import GeneratePython
    from rosidl_typesupport_c.cli import GenerateCTypesupport
    from rosidl_typesupport_fastrtps_c.cli import GenerateFastRTPSCTypesupport
    from rosidl_typesupport_introspection_c.cli import GenerateIntrospectionCTypesupport

    logging.disable(logging.WARNING)  # rosidl_cli warns about entry points listed twice (egg-info + dist-info)
    prefix = _prefix()
    include_paths = [str(prefix / "share" / d) for d in DEPENDENCIES]
    idl_dir = out / "idl"
    (idl_dir / "msg").mkdir(parents=True)
    idl_files = []
    for name in MESSAGES:
        convert_msg_to_idl(MSG_DIR.parent, PACKAGE, Path("msg") / f"{name}.msg", idl_dir / "msg")
        idl_files.append(f"{idl_dir}:msg/{name}.idl")
    hashes = generate_type_hashes(package_name=PACKAGE, interface_files=idl_files, include_paths=include_paths,
                                  output_path=out / "type_description")
    steps = [("c", GenerateC("c"), {"type_description_files": [str(h) for h in hashes]}),
             ("fastrtps_c", GenerateFastRTPSCTypesupport("fastrtps_c"), {}),
             ("introspection_c", GenerateIntrospectionCTypesupport("introspection_c"), {}),
             ("typesupport_c", GenerateCTypesupport("c", typesupport_implementations=list(TYPESUPPORTS)), {}),
             ("py", GeneratePython("py", typesupport_implementations=["rosidl_typesupport_c", *TYPESUPPORTS]), {})]
    for sub, extension, extra in steps:
        extension.generate(PACKAGE, idl_files, include_paths, output_path=out / sub / PACKAGE, **extra)
    (out / "info.json").write_text(json.dumps({"numpy_include": numpy.get_include()}))


def type_hash(python_dir: Path, name: str = "LabelInfo") -> str:
    """The RIHS01 hash the generator computed for vision_msgs/msg/<name> (from the build's share/ JSON)."""
    data = json.loads((python_dir.parent / "share" / PACKAGE / "msg" / f"{name}.json").read_text())
    return next(h["hash_string"] for h in data["type_hashes"] if h["type_name"] == f"{PACKAGE}/msg/{name}")


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=None, help=f"default: {DEFAULT_CACHE}")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is current")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--generate", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):
            _generate(Path(args.generate))
        return 0
    start = time.monotonic()
    path = ensure_vision_msgs(args.cache_dir, force=args.force,
                              log=(lambda m: print(m, file=sys.stderr)) if args.verbose else None)
    if path is None:
        print(_reason, file=sys.stderr)
        return 2
    print(f"vision_msgs ready in {time.monotonic() - start:.1f} s; LabelInfo {type_hash(path)}", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
