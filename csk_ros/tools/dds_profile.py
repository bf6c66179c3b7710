"""Which Fast DDS XML profile a process loads (no ROS import; used by the
launch file, the benchmarks and `python -m csk_ros.dds_profile`).

Large camera frames need the SENDING process configured (see
config/fastdds_large_frames.xml), so the camera driver and the node must load
the same profile. Rules of ``choose_profile``:
  * "" or "auto": a profile the user already set (FASTDDS_DEFAULT_PROFILES_FILE,
    or FASTRTPS_DEFAULT_PROFILES_FILE on Humble's Fast DDS 2.x) wins; otherwise
    the shipped one.
  * "none": Fast DDS defaults (both variables removed).
  * a path: that file; it must exist (a typo would otherwise silently fall back
    to the defaults that lose frames).
``environment_for`` sets FASTDDS_DEFAULT_PROFILES_FILE (Fast DDS 3: Kilted and
later) and FASTRTPS_DEFAULT_PROFILES_FILE (Fast DDS 2.x: Humble, Jazzy), the
latter left out where ROS_DISTRO names a Fast DDS 3 distro, whose rmw warns at
every start that the old name is deprecated.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
#: distros whose default RMW ships Fast DDS 3 (reads FASTDDS_*, warns on FASTRTPS_*)
FAST_DDS_3_DISTROS = ("kilted", "lyrical", "rolling")
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


def environment_for(profile: str | None, distro: str | None = None) -> dict[str, str | None]:
    """Variables to set (None = unset) so that a process loads `profile` (distro: ROS_DISTRO by default)."""
    distro = (os.environ.get("ROS_DISTRO", "") if distro is None else distro).lower()
    env = {name: profile for name in ENV_VARS}
    if profile is not None and distro in FAST_DDS_3_DISTROS:
        env[ENV_VARS[1]] = None
    return env


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
    print(f"# csk_ros: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
