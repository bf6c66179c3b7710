"""Which Fast DDS profile processes load (csk_ros/tools/dds_profile.py, also `python -m csk_ros.dds_profile`;
scripts/dds_env.sh) and what it holds."""

import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest

from csk_ros.tools.dds_profile import ENV_VARS, choose_profile, environment_for, fast_dds_major, shipped_profile

ROOT = Path(__file__).resolve().parents[2]
NS = {"f": "http://www.eprosima.com"}


def test_auto_takes_the_shipped_profile_when_none_is_set():
    profile, why = choose_profile("auto", environ={})
    assert Path(profile) == ROOT / "config" / "fastdds_large_frames.xml" and "shipped" in why


@pytest.mark.parametrize("name", ENV_VARS)
def test_auto_respects_a_profile_the_user_already_set(name):
    assert choose_profile("", environ={name: "/etc/robot/dds.xml"})[0] == "/etc/robot/dds.xml"


def test_none_means_fast_dds_defaults_and_a_missing_file_is_an_error(tmp_path):
    assert choose_profile("none", environ={})[0] is None
    assert environment_for(None, distro="humble") == {name: None for name in ENV_VARS}
    with pytest.raises(ValueError, match="is not a file"):
        choose_profile(str(tmp_path / "typo.xml"), environ={})
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    assert choose_profile(str(mine), environ={FASTDDS: "/other.xml"})[0] == str(mine)


FASTDDS, FASTRTPS = ENV_VARS


def wheels(**versions):
    """A stand-in for importlib.metadata.version over the given installed wheels."""
    def version_of(name):
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]
    return version_of


def test_only_the_variable_the_distributions_fast_dds_reads_is_exported():
    for distro in ("humble", "jazzy"):  # Fast DDS 2.x reads FASTRTPS_* only
        assert environment_for("/p.xml", distro=distro, version_of=wheels()) == {FASTDDS: None, FASTRTPS: "/p.xml"}
    for distro in ("kilted", "rolling"):  # Fast DDS 3 reads FASTDDS_* and its rmw warns on FASTRTPS_*
        assert environment_for("/p.xml", distro=distro, version_of=wheels()) == {FASTDDS: "/p.xml", FASTRTPS: None}
    # nothing tells (no ROS_DISTRO, no Fast DDS wheel): both, so the one Fast DDS reads is among them
    assert environment_for("/p.xml", distro="", version_of=wheels()) == {FASTDDS: "/p.xml", FASTRTPS: "/p.xml"}


def test_without_ros_distro_the_installed_fast_dds_wheel_decides():
    kilted, jazzy = wheels(**{"ros-fastdds": "3.2.3"}), wheels(**{"ros-fastrtps": "2.14.5"})
    assert fast_dds_major("", kilted) == 3 and fast_dds_major("", jazzy) == 2 and fast_dds_major("", wheels()) is None
    assert environment_for("/p.xml", distro="", version_of=kilted) == {FASTDDS: "/p.xml", FASTRTPS: None}
    assert environment_for("/p.xml", distro="", version_of=jazzy) == {FASTDDS: None, FASTRTPS: "/p.xml"}
    assert fast_dds_major("jazzy", kilted) == 2  # a sourced distribution names what it runs


def cli_lines(env_extra):
    env = {"PATH": "/usr/bin:/bin", **env_extra}
    result = subprocess.run([sys.executable, "-m", "csk_ros.dds_profile"], env=env, cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_the_cli_exports_only_the_variable_the_running_distribution_reads():
    profile = str(ROOT / "config" / "fastdds_large_frames.xml")
    assert cli_lines({"ROS_DISTRO": "kilted"}) == [f"export {FASTDDS}={profile}", f"unset {FASTRTPS}"]
    assert cli_lines({"ROS_DISTRO": "jazzy"}) == [f"unset {FASTDDS}", f"export {FASTRTPS}={profile}"]
    # no ROS_DISTRO (the PyPI wheels of this environment): the Fast DDS installed here decides
    read = {3: [FASTDDS], 2: [FASTRTPS], None: [FASTDDS, FASTRTPS]}[fast_dds_major("")]
    assert [line for line in cli_lines({}) if line.startswith("export")] == [f"export {n}={profile}" for n in read]


def sourced_env(env):
    out = subprocess.run(["bash", "-c", f". {ROOT / 'scripts' / 'dds_env.sh'} 2>/dev/null; env"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_dds_env_sh_sets_the_name_the_distribution_reads_and_keeps_the_users_profile(tmp_path):
    env = sourced_env({"PATH": "/usr/bin:/bin"})  # no ROS_DISTRO: both names
    assert env[FASTDDS] == env[FASTRTPS] == str(ROOT / "config" / "fastdds_large_frames.xml")
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    env = sourced_env({"PATH": "/usr/bin:/bin", FASTRTPS: str(mine)})
    assert env[FASTDDS] == env[FASTRTPS] == str(mine)
    env = sourced_env({"PATH": "/usr/bin:/bin", "ROS_DISTRO": "kilted", FASTRTPS: str(mine)})
    assert FASTRTPS not in env and env[FASTDDS] == str(mine)
    env = sourced_env({"PATH": "/usr/bin:/bin", "ROS_DISTRO": "jazzy", FASTDDS: str(mine)})
    assert FASTDDS not in env and env[FASTRTPS] == str(mine)


def test_the_profile_gives_shared_memory_room_for_hd_frames_and_is_the_default_profile():
    root = ET.parse(shipped_profile()).getroot()
    shm = next(
        d for d in root.iterfind(".//f:transport_descriptor", NS) if d.findtext("f:type", namespaces=NS) == "SHM"
    )
    hd_bgr8 = 1280 * 720 * 3
    assert int(shm.findtext("f:segment_size", namespaces=NS)) >= 8 * hd_bgr8
    assert int(shm.findtext("f:maxMessageSize", namespaces=NS)) >= hd_bgr8
    participant = root.find(".//f:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = {t.text for t in participant.iterfind(".//f:userTransports/f:transport_id", NS)}
    declared = {d.findtext("f:transport_id", namespaces=NS) for d in root.iterfind(".//f:transport_descriptor", NS)}
    assert used == declared and participant.findtext(".//f:useBuiltinTransports", namespaces=NS) == "false"
