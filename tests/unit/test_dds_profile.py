"""Which Fast DDS profile processes load (csk_ros/tools/dds_profile.py, also `python -m csk_ros.dds_profile`;
scripts/dds_env.sh) and what it holds."""

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from csk_ros.tools.dds_profile import ENV_VARS, choose_profile, environment_for, shipped_profile

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
    assert choose_profile(str(mine), environ={ENV_VARS[0]: "/other.xml"})[0] == str(mine)


def test_the_old_variable_name_is_set_only_where_fast_dds_2_reads_it():
    for distro in ("humble", "jazzy", ""):  # unknown: both, to be safe
        assert environment_for("/p.xml", distro=distro) == {name: "/p.xml" for name in ENV_VARS}
    assert environment_for("/p.xml", distro="kilted") == {ENV_VARS[0]: "/p.xml", ENV_VARS[1]: None}


def sourced_env(env):
    out = subprocess.run(["bash", "-c", f". {ROOT / 'scripts' / 'dds_env.sh'} 2>/dev/null; env"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_dds_env_sh_sets_both_names_and_keeps_the_users_profile(tmp_path):
    env = sourced_env({"PATH": "/usr/bin:/bin"})
    assert env[ENV_VARS[0]] == env[ENV_VARS[1]] == str(ROOT / "config" / "fastdds_large_frames.xml")
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    env = sourced_env({"PATH": "/usr/bin:/bin", "FASTRTPS_DEFAULT_PROFILES_FILE": str(mine)})
    assert env[ENV_VARS[0]] == env[ENV_VARS[1]] == str(mine)
    env = sourced_env({"PATH": "/usr/bin:/bin", "ROS_DISTRO": "kilted"})
    assert ENV_VARS[1] not in env and env[ENV_VARS[0]].endswith("fastdds_large_frames.xml")


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
