"""python -m csk_ros.bag without ROS: image folders -> bag -> segmented bag -> images, read back with
rosbags and with the official MCAP libraries, and every bad input as a count or a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from csk_ros.bag.__main__ import main as bag_main
from csk_ros.bag.bagio import COMPRESSED, IMAGE, MessageFactory, Topics, atomic_writer
from harness.stream_client import scene
from tests.support.bags import pixels, read_bag

ROOT = Path(__file__).resolve().parents[2]
H, W = 60, 80


def write_folders(root: Path, n: int = 12, thermal16: bool = False) -> tuple[Path, Path]:
    """MSRS-style vi/ and ir/ folders of synthetic scenes (names shared, as MSRS pairs them)."""
    eo_dir, ir_dir = root / "vi", root / "ir"
    eo_dir.mkdir(parents=True), ir_dir.mkdir(parents=True)
    for i in range(n):
        eo, ir = scene(H, W, i * 0.1)
        if thermal16:
            ir = (ir.astype(np.uint16) * 200 + np.uint16(i))
        cv2.imwrite(str(eo_dir / f"{i:05d}D.png"), eo[:, :, ::-1])
        cv2.imwrite(str(ir_dir / f"{i:05d}D.png"), ir)
    return eo_dir, ir_dir


@pytest.fixture
def stream_bag(tmp_path):
    eo_dir, ir_dir = write_folders(tmp_path / "frames")
    bag = tmp_path / "in"
    assert bag_main(["from-images", str(eo_dir), str(ir_dir), str(bag), "--rate", "10", "--quiet"]) == 0
    return bag


def segment(bag: Path, out: Path, bundle: Path, *extra) -> int:
    return bag_main(["segment", str(bag), str(out), "--bundle", str(bundle), "--quiet", *extra])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_segment_writes_the_nodes_outputs_readable_by_rosbags(tmp_path, tiny_bundle, stream_bag, storage):
    out = tmp_path / "out"
    assert segment(stream_bag, out, tiny_bundle, "--storage", storage, "--json", str(tmp_path / "s.json")) == 0
    topics = read_bag(out)
    ir = {(m.header.stamp.sec, m.header.stamp.nanosec): m for _, m in read_bag(stream_bag)["/ir/image"]}
    for name in ("mask", "confidence", "colored_mask"):
        msgs = [m for _, m in topics[f"/segment_node/{name}"]]
        assert len(msgs) == len(ir) == 12  # every IR frame, none dropped
        for m in msgs:  # the IR frame's header and size, as the live node publishes them
            src = ir[(m.header.stamp.sec, m.header.stamp.nanosec)]
            assert (m.header.frame_id, m.height, m.width) == (src.header.frame_id, H, W)
    classes = json.loads(topics["/segment_node/classes"][0][1].data)
    assert classes["classes"][0]["name"] == "unlabeled"
    modes = [json.loads(m.data) for _, m in topics["/segment_node/mode"]]
    assert modes[0]["reason"] == "startup" and modes[-1]["mode"] == "fused"
    diag = topics["/diagnostics"]
    assert len(diag) >= 2 and all(b[0] >= a[0] for a, b in zip(diag, diag[1:]))
    values = {kv.key: kv.value for kv in diag[-1][1].status[0].values}
    assert values["masks_fused"] == str(json.loads((tmp_path / "s.json").read_text())["masks_fused"])
    if storage == "mcap":
        assert list(out.glob("*.mcap"))
    else:
        assert list(out.glob("*.db3"))


def test_the_output_opens_in_the_official_mcap_reader(tmp_path, tiny_bundle, stream_bag):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out = tmp_path / "out"
    assert segment(stream_bag, out, tiny_bundle, "--copy-inputs") == 0
    counts: dict[str, int] = {}
    with open(next(out.glob("*.mcap")), "rb") as f:
        for _schema, channel, _message, msg in make_reader(f, decoder_factories=[DecoderFactory()]) \
                .iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == "/segment_node/mask":
                assert msg.encoding == "mono8" and len(msg.data) == H * W
    assert counts["/segment_node/mask"] == counts["/ir/image"] == counts["/eo/image"] == 12


def test_the_same_bag_twice_gives_byte_identical_output(tmp_path, tiny_bundle, stream_bag):
    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    assert segment(stream_bag, a, tiny_bundle) == 0
    assert segment(stream_bag, b, tiny_bundle) == 0
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_compressed_inputs_and_sixteen_bit_thermal_round_trip(tmp_path, tiny_bundle):
    eo_dir, ir_dir = write_folders(tmp_path / "frames", n=6, thermal16=True)
    bag = tmp_path / "in"
    assert bag_main(["from-images", str(eo_dir), str(ir_dir), str(bag), "--compressed", "--quiet"]) == 0
    topics = read_bag(bag)
    assert set(topics) == {"/eo/image/compressed", "/ir/image/compressed"}
    assert segment(bag, tmp_path / "out", tiny_bundle) == 0
    assert len(read_bag(tmp_path / "out")["/segment_node/mask"]) == 6
    # to-images gives the thermal frames back bit-exact (16-bit PNG in, 16-bit PNG out)
    assert bag_main(["to-images", str(bag), str(tmp_path / "back"), "--quiet"]) == 0
    back = sorted((tmp_path / "back" / "ir").iterdir())
    assert len(back) == 6
    for original, returned in zip(sorted(ir_dir.iterdir()), back):
        a, b = cv2.imread(str(original), cv2.IMREAD_UNCHANGED), cv2.imread(str(returned), cv2.IMREAD_UNCHANGED)
        assert b.dtype == np.uint16 and np.array_equal(a, b)


def test_to_images_returns_raw_frames_bit_exact_in_the_msrs_layout(tmp_path, stream_bag):
    eo_dir = tmp_path / "frames" / "vi"
    assert bag_main(["to-images", str(stream_bag), str(tmp_path / "back"), "--every", "3", "--quiet"]) == 0
    vi = sorted((tmp_path / "back" / "vi").iterdir())
    ir = sorted((tmp_path / "back" / "ir").iterdir())
    assert [p.name for p in vi] == [p.name for p in ir] and len(vi) == 4  # pairs 0, 3, 6, 9 of 12
    originals = sorted(eo_dir.iterdir())
    for k, path in enumerate(vi):
        assert np.array_equal(cv2.imread(str(path)), cv2.imread(str(originals[3 * k])))


def test_four_channel_mfnet_images_are_split_into_eo_and_ir(tmp_path, tiny_bundle):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        eo, ir = scene(H, W, i * 0.1)
        cv2.imwrite(str(folder / f"{i:05d}N.png"), np.dstack([eo[:, :, ::-1], ir]))
    bag = tmp_path / "in"
    assert bag_main(["from-images", str(folder), str(folder), str(bag), "--quiet"]) == 0
    topics = read_bag(bag)
    eo0, ir0 = scene(H, W, 0.0)
    assert np.array_equal(pixels(topics["/eo/image"][0][1]), eo0)
    assert np.array_equal(pixels(topics["/ir/image"][0][1]), ir0)


# ------------------------------------------------------------------ bad input


def write_custom_bag(path: Path, frames, storage: str = "mcap"):
    """frames: (topic, msgtype, message builder(factory), log time ns)."""
    factory = MessageFactory()
    with atomic_writer(path, storage) as writer:
        topics = Topics(writer, factory)
        for topic, msgtype, build, t in frames:
            topics.write(topic, msgtype, build(factory), t)


def raw_pair(factory, t_ns, topic_stamp=None):
    eo, ir = scene(H, W, t_ns * 1e-9)
    stamp = t_ns if topic_stamp is None else topic_stamp
    return (factory.image(eo, "rgb8", factory.header(stamp, "eo")),
            factory.image(ir, "mono8", factory.header(stamp, "ir")))


def test_corrupt_payloads_and_disordered_stamps_are_counted_not_fatal(tmp_path, tiny_bundle, capsys):
    t0, period = 1_700_000_000 * 10**9, 10**8
    frames = []
    for k in range(20):
        t = t0 + k * period
        stamp = t0 + (k - 2) * period if k == 10 else (t0 + 9 * period if k == 11 else t)  # old, duplicate
        frames.append(("/eo/image", IMAGE, lambda f, t=t, s=stamp: raw_pair(f, t, s)[0], t))
        if k in (5, 6):  # a corrupt JPEG on the IR stream
            frames.append(("/ir/image/compressed", COMPRESSED,
                           lambda f, t=t: f.compressed(b"\xff\xd8\xff\xe0garbage", "jpeg", f.header(t, "ir")), t))
        else:
            frames.append(("/ir/image/compressed", COMPRESSED, lambda f, t=t: f.compressed(
                cv2.imencode(".png", raw_pair(f, t)[1].data.reshape(H, W))[1].tobytes(), "mono8; png compressed",
                f.header(t, "ir")), t))
    write_custom_bag(tmp_path / "in", frames)
    out = tmp_path / "out"
    assert segment(tmp_path / "in", out, tiny_bundle, "--json", str(tmp_path / "s.json")) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["rejected"] == {"ir_corrupt": 2}
    assert summary["ir_frames"] == summary["masks"] == 18
    assert "ir_corrupt 2" in capsys.readouterr().out


def test_missing_or_ambiguous_topics_and_unsupported_types_fail_in_one_line(tmp_path, tiny_bundle, capsys):
    t = 1_700_000_000 * 10**9
    write_custom_bag(tmp_path / "two", [
        ("/cam_a/rgb", IMAGE, lambda f: raw_pair(f, t)[0], t), ("/cam_b/rgb", IMAGE, lambda f: raw_pair(f, t)[0], t),
        ("/thermal/image", IMAGE, lambda f: raw_pair(f, t)[1], t), ("/status", "std_msgs/msg/String",
                                                                    lambda f: f.string("x"), t)])
    cases = [
        ([], "cannot tell which topic is EO (candidates: /cam_a/rgb, /cam_b/rgb"),
        (["--eo-topic", "/missing"], "--eo-topic /missing is not in the bag"),
        (["--eo-topic", "/status"], "--eo-topic /status has type std_msgs/msg/String, not an image"),
        (["--eo-topic", "/cam_a/rgb", "--ir-transport", "compressed"],
         "--ir-transport compressed, but /thermal/image holds raw images"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        assert segment(tmp_path / "two", out, tiny_bundle, *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()
    assert segment(tmp_path / "two", tmp_path / "ok", tiny_bundle, "--eo-topic", "/cam_a/rgb") == 0


def test_a_truncated_or_foreign_file_is_one_line_and_leaves_no_output(tmp_path, tiny_bundle, stream_bag, capsys):
    mcap_file = next(stream_bag.glob("*.mcap"))
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(mcap_file.read_bytes()[: mcap_file.stat().st_size // 2])
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a bag at all" * 100)
    for bag in (cut, junk, tmp_path / "nowhere"):
        out = tmp_path / f"out_{bag.stem}"
        code = segment(bag, out, tiny_bundle, "--json", str(tmp_path / f"{bag.stem}.json"))
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        if code == 0:  # a recording cut off mid-write: what was readable is segmented, and it says so
            summary = json.loads((tmp_path / f"{bag.stem}.json").read_text())
            assert summary["bag_truncated"] and 0 < summary["masks"] < 12
            assert "WARNING" in captured.err
        else:
            assert code == 2 and len(captured.err.strip().splitlines()) == 1, captured.err
            assert not out.exists()
    assert not list(tmp_path.glob(".out*partial*"))


def test_a_failed_run_leaves_no_half_bag(tmp_path, tiny_bundle, stream_bag):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_writer(out) as writer:
            Topics(writer, MessageFactory()).write("/x", "std_msgs/msg/String", MessageFactory().string("a"), 1)
            raise RuntimeError("inference blew up")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "in"]  # the input only: no out, no staging
    assert segment(stream_bag, out, tiny_bundle) == 0
    assert segment(stream_bag, out, tiny_bundle) == 2  # never overwritten


def test_params_file_is_read_with_the_nodes_rules(tmp_path, tiny_bundle, stream_bag, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    confidence_threshold: 2.0\n")
    assert segment(stream_bag, tmp_path / "out", tiny_bundle, "--params", str(params)) == 2
    assert "confidence_threshold" in capsys.readouterr().err
    params.write_text("/**:\n  ros__parameters:\n    low_confidence_policy: unlabeled\n    health:\n"
                      "      eo_timeout_s: 0.5\n")
    assert segment(stream_bag, tmp_path / "out", tiny_bundle, "--params", str(params)) == 0
    params.write_text("/**:\n  ros__parameters:\n    helth.eo_timeout_s: 0.5\n")
    assert segment(stream_bag, tmp_path / "out2", tiny_bundle, "--params", str(params)) == 2
    assert "unknown parameter(s) ['helth.eo_timeout_s']" in capsys.readouterr().err


def test_the_module_runs_as_a_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "csk_ros.bag", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "segment" in proc.stdout and "from-images" in proc.stdout


def test_a_write_error_surfaces_and_leaves_nothing(tmp_path):
    from csk_ros.bag.stages import WriteBehind

    out = tmp_path / "out"
    topics = WriteBehind(out, "mcap", MessageFactory())
    topics.write("/x", "std_msgs/msg/String", MessageFactory().string("fine"), 1)
    topics.write("/y", "no_such_pkg/msg/Nothing", MessageFactory().string("bad"), 2)
    with pytest.raises(Exception, match="no_such_pkg"):
        topics.close()
    assert not out.exists() and not list(tmp_path.iterdir())
    topics = WriteBehind(out, "sqlite3", MessageFactory())  # the thread owns sqlite3's connection
    topics.write("/x", "std_msgs/msg/String", MessageFactory().string("fine"), 1)
    topics.abort()
    assert not out.exists() and not list(tmp_path.iterdir())
