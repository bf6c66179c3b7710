"""Which Fast DDS XML profile a process loads, and in which environment variable.

    eval "$(python3 -m csk_ros.dds_profile)"      # also python3 -m csk_ros.tools.dds_profile

An operator tool whose rules the runtime shares: the launch file sets the node's environment with
``choose_profile`` and ``environment_for``, csk_ros/logic/transport.py reports which profile the node
loaded, the benchmarks start their processes with it. No ROS import.

Large camera frames need the SENDING process configured (see config/fastdds_large_frames.xml), so the
camera driver and the node must load the same profile. Rules of ``choose_profile``:
  * "" or "auto": a profile the user already set (in either variable below) wins; otherwise the shipped one.
  * "none": Fast DDS defaults (both variables removed).
  * a path: that file; it must exist (a typo would otherwise silently fall back to the defaults that lose
    frames).

``environment_for`` exports the profile in the ONE variable the running distribution's Fast DDS reads and
unsets the other:
  * Fast DDS 2.x (Humble 2.6, Jazzy 2.14) reads FASTRTPS_DEFAULT_PROFILES_FILE, and only that name: its
    xmlparser's DEFAULT_FASTRTPS_ENV_VARIABLE (src/cpp/rtps/xmlparser/XMLParserCommon.cpp on the 2.x
    branches), the one profile variable of the 2.x documentation's environment-variable list;
  * Fast DDS 3 (Kilted and later) reads FASTDDS_DEFAULT_PROFILES_FILE, and Kilted's rmw_fastrtps (9.3.0,
    "Add deprecation warning for FASTRTPS_DEFAULT_PROFILES_FILE") warns at the start of every process that
    still has the old name set.
The running distribution is the one ROS_DISTRO names (a sourced ROS install sets it) or, in a Python
environment of PyPI ROS wheels where nothing sets it, the Fast DDS wheel installed (`ros-fastdds` 3.x for
Kilted, `ros-fastrtps` 2.x for Jazzy). Where neither tells, both names are exported: the one Fast DDS reads
is among them (scripts/dds_env.sh, the shell twin, goes by ROS_DISTRO alone).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from importlib import metadata
from pathlib import Path

ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
#: distros whose default RMW ships Fast DDS 3 (reads FASTDDS_*, warns on FASTRTPS_*) or Fast DDS 2 (FASTRTPS_*)
FAST_DDS_3_DISTROS = ("kilted", "lyrical", "rolling")
FAST_DDS_2_DISTROS = ("foxy", "galactic", "humble", "iron", "jazzy")
#: PyPI wheels that carry Fast DDS itself: Kilted's (3.x) and Jazzy's (2.14)
FAST_DDS_WHEELS = ("ros-fastdds", "ros-fastrtps")
PROFILE_NAME = "fastdds_large_frames.xml"


def shipped_profile() -> Path:
    """The installed profile (share/csk_ros/config) or, in a source checkout, config/ beside the package."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("csk_ros")) / "config" / PROFILE_NAME
        if installed.is_file():
            return installed
    except Exception:  # not installed with colcon (pip / source checkout)
        pass
    return Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME


def choose_profile(requested: str, environ=None) -> tuple[str | None, str]:
    """(profile path or None for Fast DDS defaults, why) -- see the module docstring."""
    environ = os.environ if environ is None else environ
    requested = (requested or "").strip()
    if requested in ("", "auto"):
        for name in ENV_VARS:
            if environ.get(name):
                return environ[name], f"the profile already set in {name}"
        return str(shipped_profile()), "the shipped large-frame profile"
    if requested == "none":
        return None, "dds_profile:=none: frames over 512 KB may be lost on best-effort QoS"
    path = Path(requested).expanduser()
    if not path.is_file():
        raise ValueError(f"dds_profile {requested!r} is not a file: give an existing Fast DDS XML profile, "
                         "'auto' (the user's or the shipped one) or 'none'")
    return str(path.resolve()), "the requested profile"


def fast_dds_major(distro: str | None = None, version_of=metadata.version) -> int | None:
    """2 or 3: the major version of the Fast DDS this environment runs; None when nothing tells.
    `distro` defaults to ROS_DISTRO; `version_of` reads an installed wheel's version (tests replace it)."""
    distro = (os.environ.get("ROS_DISTRO", "") if distro is None else distro).strip().lower()
    if distro in FAST_DDS_3_DISTROS:
        return 3
    if distro in FAST_DDS_2_DISTROS:
        return 2
    for wheel in FAST_DDS_WHEELS:
        try:
            return int(version_of(wheel).split(".")[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
    return None


def variables_read(major: int | None) -> tuple[str, ...]:
    """The profile variable(s) Fast DDS `major` reads: one name, or both when the version is unknown."""
    if major is None:
        return ENV_VARS
    return (ENV_VARS[0],) if major >= 3 else (ENV_VARS[1],)


def environment_for(profile: str | None, distro: str | None = None,
                    version_of=metadata.version) -> dict[str, str | None]:
    """Variables to set (None = unset) so that a process loads `profile`: only the name its Fast DDS reads."""
    read = variables_read(fast_dds_major(distro, version_of))
    return {name: profile if profile is not None and name in read else None for name in ENV_VARS}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Print the shell lines that make a process load the DDS profile "
                                            "the node uses: eval \"$(python3 -m csk_ros.dds_profile)\"")
    p.add_argument("profile", nargs="?", default="auto", help="auto (default) | none | PATH")
    args = p.parse_args(argv)
    try:
        profile, why = choose_profile(args.profile)
    except ValueError as exc:
        print(f"csk_ros.dds_profile: {exc}", file=sys.stderr)
        return 2
    for name, value in environment_for(profile).items():
        print(f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}")
    major = fast_dds_major()
    target = f"Fast DDS {major}" if major else "Fast DDS of unknown version (no ROS_DISTRO, no Fast DDS wheel)"
    print(f"# csk_ros: {why}, for {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
