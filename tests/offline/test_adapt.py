"""python -m training.adapt on tiny generated pairs whose thermal went through a synthetic "second
pipeline" (gamma + offset): AdaBN moves the IR statistics to the target's, the adapted checkpoint
goes through evaluate -> export -> load_bundle, bags work as input, and every bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from csk_ros.backends import load_bundle
from csk_ros.bag.bagio import MessageFactory, Topics, atomic_writer
from csk_ros.bag.images import from_images
from csk_ros.imaging.thermal import ThermalScaling
from tests.conftest import BUNDLE_SIZE, export_tiny_bundle, write_checkpoint
from training.adapt.adabn import ir_path_batchnorms, reestimate
from training.adapt.cli import main
from training.adapt.target import load_target
from training.checkpoint import model_from_checkpoint
from training.data import generate_sample
from training.evaluate import evaluate_checkpoint

H, W = BUNDLE_SIZE


def second_pipeline(ir: np.ndarray) -> np.ndarray:
    """Another camera's intensity mapping: a gamma curve, a gain and an offset."""
    return np.clip(255 * (ir / 255.0) ** 0.5 * 0.6 + 60, 0, 255).astype(np.uint8)


def write_pairs(root: Path, n: int = 8, eo_dir: str = "vi", labels: bool = False, pipeline=second_pipeline) -> Path:
    """vi/ (or eo/) and ir/ as `csk_ros.bag to-images` writes them; with labels, an MSRS layout plus val.txt."""
    for sub in (eo_dir, "ir") + (("Segmentation_labels",) if labels else ()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        s = generate_sample(i, "test", seed=3, size=(H, W))
        name = f"{i:05d}{'N' if s['is_night'] else 'D'}"
        cv2.imwrite(str(root / eo_dir / f"{name}.png"), s["eo"][:, :, ::-1])
        cv2.imwrite(str(root / "ir" / f"{name}.png"), pipeline(s["ir"]))
        if labels:
            cv2.imwrite(str(root / "Segmentation_labels" / f"{name}.png"), s["label"].astype(np.uint8))
        names.append(name)
    if labels:
        (root / "val.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("adapt") / "csk.pt")


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("target") / "pairs", eo_dir="eo")  # MSRS-style eo/


def stem_input_stats(model, ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and variance of what the first IR BatchNorm sees on these frames (eval mode)."""
    seen = []
    hook = model.backbone.bn1.bns[1].register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        model.eval()(ir=ir, mode="ir_only")
    hook.remove()
    x = seen[0]
    return x.mean((0, 2, 3)), x.var((0, 2, 3))


def test_adabn_moves_the_ir_statistics_to_the_target_pipeline(checkpoint, target):
    model, _ = model_from_checkpoint(checkpoint)
    pairs = load_target(target, (H, W), ThermalScaling(), 40.0, 100)
    ir = torch.from_numpy(pairs.ir)[:, None]
    mean_t, var_t = stem_input_stats(model, ir)
    bn = model.backbone.bn1.bns[1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    far_mean, far_var = (bn.running_mean - mean_t).abs().mean(), (bn.running_var - var_t).abs().mean()

    reestimate(model, pairs, batch_size=4, device="cpu")

    assert (bn.running_mean - mean_t).abs().mean() < 0.05 * far_mean
    assert (bn.running_var - var_t).abs().mean() < 0.1 * far_var
    after = model.state_dict()
    ir_bns = ir_path_batchnorms(model)
    assert any(n.startswith("aspp_ir.") for n in ir_bns) and "head_fused.0.1" not in ir_bns
    for key, value in before.items():
        owner = key.rsplit(".", 1)[0]
        stat = key.endswith(("running_mean", "running_var", "num_batches_tracked"))
        if stat and owner in ir_bns:
            continue
        assert torch.equal(value, after[key]), f"{key} changed: AdaBN may only touch the IR path's statistics"
    # The source pipeline's frames give other statistics: the shift is what AdaBN followed.
    source_ir = torch.from_numpy(np.stack([generate_sample(i, "test", seed=3, size=(H, W))["ir"]
                                           for i in range(8)]))[:, None]
    mean_s, _ = stem_input_stats(model, source_ir)
    assert (mean_s - mean_t).abs().mean() > 5 * (bn.running_mean - mean_t).abs().mean()


def test_adabn_prior_keeps_a_share_of_the_source_statistics(checkpoint, target):
    pairs = load_target(target, (H, W), ThermalScaling(), 40.0, 100)
    pure, _ = model_from_checkpoint(checkpoint)
    reestimate(pure, pairs, batch_size=4, device="cpu")
    mixed, _ = model_from_checkpoint(checkpoint)
    source = mixed.backbone.bn1.bns[1].running_mean.clone()
    reestimate(mixed, pairs, batch_size=4, device="cpu", prior=0.25)
    expected = 0.25 * source + 0.75 * pure.backbone.bn1.bns[1].running_mean
    assert torch.allclose(mixed.backbone.bn1.bns[1].running_mean, expected, atol=1e-5)


def test_adapt_evaluate_export_load_bundle(checkpoint, target, tmp_path, capsys):
    val = write_pairs(tmp_path / "val", n=6, labels=True, pipeline=lambda ir: ir)  # the source camera, labelled
    val_ir = tmp_path / "val_ir"
    val_ir.mkdir()
    for path in sorted((val / "ir").iterdir())[:4]:  # the same frames through the second pipeline
        cv2.imwrite(str(val_ir / path.name), second_pipeline(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)))
    out = tmp_path / "adapted"
    rc = main(["--checkpoint", str(checkpoint), "--pairs", str(target), "--out", str(out), "--steps", "3",
               "--batch-size", "4", "--log-every", "1", "--val-root", str(val), "--val-ir-dir", str(val_ir),
               "--val-raw", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "| AdaBN |" in printed and "IR-only = fused, day pairs" in printed and "target (4 frames)" in printed
    model, ckpt = model_from_checkpoint(out / "best.pt")  # the same format, weights_only
    source, _ = model_from_checkpoint(checkpoint)
    record = ckpt["adaptation"]
    assert record["steps"]["selftrain"]["steps"] == 3 and record["steps"]["adabn"]["frames"] == 8
    assert record["target"]["pairs"] == 8 and record["options"]["trainable"] == "ir_path"
    assert set(record["labelled"]["after"]) == {"target", "raw"}
    assert 0.0 <= record["signals"]["after"]["agreement_day"] <= 1.0
    assert 0.0 <= record["signals"]["after"]["fused_miou_day"] <= 1.0
    assert json.loads((out / "adapt.json").read_text())["steps"] == record["steps"]
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # The IR path adapted; the shared convolutions and the EO stream are as trained.
    new, old = model.state_dict(), source.state_dict()
    assert not torch.equal(new["backbone.bn1.bns.1.running_mean"], old["backbone.bn1.bns.1.running_mean"])
    assert not torch.equal(new["head_ir.weight"], old["head_ir.weight"])
    for key in ("backbone.conv1.weight", "backbone.bn1.bns.0.weight", "backbone.bn1.bns.0.running_mean",
                "aspp_eo.project.0.0.weight", "head_eo.weight"):
        assert torch.equal(new[key], old[key]), key

    metrics = evaluate_checkpoint(out / "best.pt", "ir_only", tmp_path / "eval", split="val", examples=0)
    assert 0.0 <= metrics["miou"] <= 1.0
    bundle = export_tiny_bundle(out / "best.pt", tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["training"]["metrics"]["adapted"] is True
    seg = load_bundle(bundle, backend="onnxruntime")
    eo = cv2.imread(str(sorted((target / "eo").iterdir())[0]))[:, :, ::-1].copy()
    ir = cv2.imread(str(sorted((target / "ir").iterdir())[0]), cv2.IMREAD_GRAYSCALE)
    mask, conf = seg.ir_only(ir)
    assert mask.shape == (H, W) and mask.max() < 9 and conf.dtype == np.uint8
    assert seg.fused(eo, ir)[0].shape == (H, W)


def test_ir_baseline_adapts_from_a_bag_with_its_own_pseudo_labels(target, tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "ir.pt", arch="deeplabv3", modality="ir")
    bag = tmp_path / "bag"
    assert from_images(target / "eo", target / "ir", bag, rate_hz=10) == 8
    out = tmp_path / "adapted"
    rc = main(["--checkpoint", str(ckpt), "--pairs", str(bag), "--out", str(out), "--steps", "2", "--batch-size", "4",
               "--source-weight", "0", "--teacher", "ema", "--loss", "kl", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    record = model_from_checkpoint(out / "best.pt")[1]["adaptation"]
    assert record["target"]["origin"] == str(bag) and record["target"]["pairs"] == 8
    assert record["steps"]["selftrain"]["teacher"] == "ema ir_only pass"
    assert "agreement_day" not in record["signals"]["before"]  # no fused pass to agree with


def test_a_rig_of_two_sizes_is_read_as_the_node_reads_it(target, tmp_path):
    """EO of another size and aspect than IR: registered with the node's eo_to_ir_homography (--params)."""
    rig = tmp_path / "rig"
    (rig / "vi").mkdir(parents=True)
    (rig / "ir").symlink_to(target / "ir")
    for path in (target / "eo").iterdir():  # twice the size, 16 px of border left and right: x_ir = x_eo / 2 - 8
        eo = cv2.copyMakeBorder(cv2.resize(cv2.imread(str(path)), (2 * W, 2 * H)), 0, 0, 16, 16, cv2.BORDER_CONSTANT)
        cv2.imwrite(str(rig / "vi" / path.name), eo)
    params = tmp_path / "segment.yaml"
    homography = "[0.5, 0.0, -8.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0]"
    params.write_text(f"/**:\n  ros__parameters:\n    eo_to_ir_homography: {homography}\n")
    pairs = load_target(rig, (H, W), ThermalScaling(), 40.0, 100, params_file=params)
    direct = load_target(target, (H, W), ThermalScaling(), 40.0, 100)
    assert pairs.eo.shape == direct.eo.shape == (8, H, W, 3)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # resampling differs at the borders only
    assert np.abs(pairs.eo[inner].astype(int) - direct.eo[inner].astype(int)).mean() < 8  # 32 with a wrong matrix
    assert np.array_equal(pairs.ir, direct.ir)


def bag_without_images(path: Path) -> Path:
    factory = MessageFactory()
    with atomic_writer(path) as writer:
        Topics(writer, factory).write("/chatter", "std_msgs/msg/String", factory.string("hi"), 1)
    return path


def mismatched_pairs(root: Path) -> Path:
    write_pairs(root, n=3)
    cv2.imwrite(str(sorted((root / "ir").iterdir())[1]), np.zeros((H - 8, W), np.uint8))
    return root


@pytest.mark.parametrize("bad, message", [
    ("checkpoint", "could not be loaded safely"),
    ("eo_checkpoint", "without an IR-only path"),
    ("no_pairs", "no EO/IR pairs here"),
    ("unpaired", "share no image file name"),
    ("sizes", "differ in aspect ratio and no eo_to_ir_homography is set"),
    ("bag", "no image topics"),
])
def test_each_bad_input_is_one_line(checkpoint, tmp_path, capsys, bad, message):
    ckpt, pairs = checkpoint, tmp_path / "pairs"
    if bad == "checkpoint":
        ckpt = tmp_path / "broken.pt"
        ckpt.write_bytes(b"not a checkpoint")
        write_pairs(pairs, n=2)
    elif bad == "eo_checkpoint":
        ckpt = write_checkpoint(tmp_path / "eo.pt", arch="deeplabv3", modality="eo")
        write_pairs(pairs, n=2)
    elif bad == "no_pairs":
        pairs.mkdir()
    elif bad == "unpaired":
        write_pairs(pairs, n=2)
        for p in (pairs / "ir").iterdir():
            p.rename(p.with_name("x" + p.name))
    elif bad == "sizes":
        mismatched_pairs(pairs)
    else:
        pairs = bag_without_images(tmp_path / "bag")
    rc = main(["--checkpoint", str(ckpt), "--pairs", str(pairs), "--out", str(tmp_path / "out"), "--quiet",
               "--source-weight", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out" / "best.pt").exists()


def test_class_balanced_pseudo_labels_weigh_the_rare_class_up():
    """96 background pixels the student gets right, 4 object pixels it gets wrong: a plain mean hides the
    error, the class-balanced one (counts 96 and 4, mean 50: weights 50/96 and 12.5) brings it out."""
    from training.adapt.options import AdaptOptions
    from training.adapt.teacher import class_balance_weights, pseudo_label_loss

    teacher = torch.zeros(1, 3, 10, 10)
    teacher[0, 0] = 5.0
    teacher[0, 0, 0, :4], teacher[0, 1, 0, :4] = 0.0, 5.0  # the object: class 1
    student = torch.zeros(1, 3, 10, 10)
    student[0, 0] = 3.0  # background everywhere
    keep = torch.ones(1, 10, 10, dtype=torch.bool)
    labels = teacher.argmax(1)
    weights = class_balance_weights(labels, keep, 3, 1.0)
    assert torch.allclose(weights, torch.tensor([50 / 96, 12.5, 0.0]))
    one = torch.ones(1)
    plain = pseudo_label_loss(student, teacher, keep, one, "ce", 1.0)
    balanced = pseudo_label_loss(student, teacher, keep, one, "ce", 1.0, class_balance=1.0)
    per_pixel = torch.nn.functional.cross_entropy(student, labels, reduction="none")[0]
    weighted = per_pixel[labels[0] == 0].sum() * 50 / 96 + per_pixel[labels[0] == 1].sum() * 12.5
    expected = weighted / (96 * 50 / 96 + 4 * 12.5)
    assert torch.isclose(balanced, expected) and balanced > 5 * plain
    kl_plain = pseudo_label_loss(student, teacher, keep, one, "kl", 2.0)
    kl_balanced = pseudo_label_loss(student, teacher, keep, one, "kl", 2.0, class_balance=1.0)
    assert kl_balanced > 5 * kl_plain  # the same weighting for the softened targets
    with pytest.raises(ValueError, match="--class-balance must be >= 0"):
        AdaptOptions(class_balance=-0.5).check()
