"""train -> evaluate CLIs end to end on synthetic data, checkpoints, resume,
determinism and the DDP path (2 gloo processes on CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import tiny_config
from training.checkpoint import load_checkpoint, model_from_checkpoint
from training.config import load_config
from training.train import main as train_main
from training.train import train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY_OVERRIDES = [
    "data.size=[48,64]", "data.num_train=16", "data.num_val=8", "data.num_test=8", "data.augment.crop=[48,64]",
    "model.depth=10", "model.width=8", "model.aspp_channels=16", "train.batch_size=4", "train.num_workers=0",
    "train.eval_every=2", "loss.contrastive_samples=64",
]


def run_cli(module: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    cfg = tiny_config()
    train(cfg, tmp_path, "csk")
    raw = torch.load(tmp_path / "best.pt", weights_only=True)  # no pickled objects inside
    assert raw["config"]["model"]["depth"] == 10 and raw["stage"] == "csk"
    model, ckpt = model_from_checkpoint(tmp_path / "best.pt")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, raw["model"][name]), name
    assert 0.0 <= ckpt["metrics"]["miou"] <= 1.0
    assert (tmp_path / "last.pt").is_file() and any((tmp_path / "tb").iterdir())


def test_checkpoint_loader_rejects_foreign_files(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a csk_ros training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_training_is_deterministic_and_resume_continues_exactly(tmp_path, monkeypatch):
    from training.objective import CskObjective

    def weights(out):
        return load_checkpoint(out / "last.pt")["model"]

    cfg = tiny_config()
    cfg["train"]["max_steps"] = 4
    train(cfg, tmp_path / "a", "csk")
    train(cfg, tmp_path / "b", "csk")
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed must give the same weights"

    # Crash in step 3 (last.pt was written at step 2), then resume.
    calls = {"n": 0}
    original = CskObjective.forward

    def crash_on_third_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CskObjective, "forward", crash_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "c", "csk")
    monkeypatch.setattr(CskObjective, "forward", original)
    assert load_checkpoint(tmp_path / "c" / "last.pt")["step"] == 2
    train(cfg, tmp_path / "c", "csk", resume=True)
    c = weights(tmp_path / "c")
    assert load_checkpoint(tmp_path / "c" / "last.pt")["step"] == 4
    assert all(torch.allclose(a[k].float(), c[k].float(), atol=1e-6) for k in a), "resume diverged"

    other = tiny_config()
    other["train"].update(max_steps=4, seed=1)
    train(other, tmp_path / "d", "csk")
    d = weights(tmp_path / "d")
    assert not all(torch.equal(a[k], d[k]) for k in a), "a different seed should change the run"


def test_teacher_then_csk_then_evaluate_cli(tmp_path):
    config = ROOT / "training" / "configs" / "synthetic.yaml"
    t = run_cli("training.train", "--config", str(config), "--out", str(tmp_path / "teacher"), "--stage", "teacher",
                "--max-steps", "2", *TINY_OVERRIDES)
    assert t.returncode == 0, t.stderr[-2000:]
    c = run_cli("training.train", "--config", str(config), "--out", str(tmp_path / "csk"), "--stage", "csk",
                "--max-steps", "2", f"teacher.checkpoint={tmp_path / 'teacher' / 'best.pt'}", *TINY_OVERRIDES)
    assert c.returncode == 0, c.stderr[-2000:]
    assert "best fused mIoU" in c.stdout
    for mode in ("fused", "ir_only"):
        e = run_cli("training.evaluate", "--checkpoint", str(tmp_path / "csk" / "best.pt"), "--mode", mode,
                    "--out", str(tmp_path / f"eval_{mode}"), "--split", "test_night")
        assert e.returncode == 0, e.stderr[-2000:]
        metrics = json.loads((tmp_path / f"eval_{mode}" / "metrics.json").read_text())
        assert {"miou", "per_class_iou", "pixel_acc", "mode", "split"} <= set(metrics)
        assert metrics["mode"] == mode and metrics["split"] == "test_night"
        assert len(metrics["per_class_iou"]) == 9 and 0.0 <= metrics["pixel_acc"] <= 1.0
        assert (tmp_path / f"eval_{mode}" / "confusion.png").stat().st_size > 1000
        assert list((tmp_path / f"eval_{mode}").glob("prediction_*.png"))
        assert "MFNet protocol" in (tmp_path / f"eval_{mode}" / "metrics.md").read_text()
    bad = run_cli("training.evaluate", "--checkpoint", str(tmp_path / "teacher" / "best.pt"), "--mode", "fused",
                  "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "supports modes ['eo_only']" in bad.stderr


def test_cli_config_errors_are_clear(tmp_path):
    config = ROOT / "training" / "configs" / "synthetic.yaml"
    r = run_cli("training.train", "--config", str(config), "--out", str(tmp_path), "model.dept=50")
    assert r.returncode == 2 and "unknown config key 'model.dept'" in r.stderr
    r = run_cli("training.train", "--config", str(config), "--out", str(tmp_path), "--stage", "csk",
                "--max-steps", "1", *TINY_OVERRIDES, "loss.kd_feature=1.0")
    assert r.returncode == 2 and "teacher checkpoint" in r.stderr


@pytest.mark.parametrize("name", ["synthetic", "mfnet", "pst900", "msrs"])
def test_shipped_configs_are_complete(name):
    cfg = load_config(ROOT / "training" / "configs" / f"{name}.yaml")
    assert cfg["data"]["name"] == name
    if name != "synthetic":
        assert cfg["model"]["depth"] == 50 and cfg["optim"]["name"] == "sgd"


def test_ddp_two_gloo_processes_on_cpu(tmp_path):
    config = tmp_path / "ddp.yaml"
    cfg = tiny_config()
    cfg["train"].update(max_steps=2, sync_bn=True)
    config.write_text(yaml.safe_dump(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(29500 + os.getpid() % 1000), "-m", "training.train", "--config", str(config),
         "--out", str(tmp_path / "out"), "--stage", "csk"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "out" / "last.pt")
    assert ckpt["step"] == 2
    assert "sync_bn applies to CUDA only" in r.stderr
    model, _ = model_from_checkpoint(tmp_path / "out" / "last.pt")
    assert model.backbone.layer1[0].bn1.bns[0].weight.shape[0] == 8


def test_model_selection_never_uses_a_test_split_unless_forced(tmp_path):
    cfg = tiny_config()
    cfg["train"].update(max_steps=2, eval_split="test")
    with pytest.raises(ValueError, match="--allow-test-selection"):
        train(cfg, tmp_path / "refused", "csk")
    assert not (tmp_path / "refused" / "best.pt").exists()
    config = tmp_path / "test_split.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert train_main(["--config", str(config), "--out", str(tmp_path / "cli")]) == 2

    best = train(cfg, tmp_path / "forced", "csk", allow_test_selection=True)
    assert best["selection"] == {"split": "test", "test_selection_forced": True}
    ckpt = load_checkpoint(tmp_path / "forced" / "best.pt")
    assert ckpt["selection"]["test_selection_forced"] and ckpt["metrics"]["selection"]["split"] == "test"
    metrics = json.loads((tmp_path / "forced" / "metrics.json").read_text())
    assert metrics["best"]["selection"]["test_selection_forced"] is True

    from training.evaluate import evaluate_checkpoint

    evaluated = evaluate_checkpoint(tmp_path / "forced" / "best.pt", "ir_only", tmp_path / "eval", examples=0)
    assert evaluated["model_selection"]["test_selection_forced"] is True
    assert "optimistic" in (tmp_path / "eval" / "metrics.md").read_text()


def test_holdout_selection_is_a_fixed_disjoint_share_of_train(tmp_path):
    from training.train import holdout_split, selection_datasets

    keep, held = holdout_split(100, 0.1)
    assert len(held) == 10 and not set(keep) & set(held) and sorted(keep + held) == list(range(100))
    assert holdout_split(100, 0.1) == (keep, held)  # deterministic, whatever train.seed is
    with pytest.raises(ValueError, match="holdout_fraction"):
        holdout_split(100, 1.5)

    cfg = tiny_config()
    cfg["train"].update(eval_split="holdout", holdout_fraction=0.25, seed=3)
    train_set, base, val_set, selection = selection_datasets(cfg, allow_test_selection=False)
    assert selection["split"] == "holdout" and not selection["test_selection_forced"]
    assert len(train_set) + len(val_set) == len(base) == 16
    train_names = {base.source.load(i)["name"] for i in train_set.indices}
    val_names = {item["name"] for item in val_set}
    assert val_names and not train_names & val_names, "held-out images must not be trained on"
    assert val_set.dataset.augment is None  # evaluated without augmentation
    best = train(dict(cfg, train=dict(cfg["train"], max_steps=2)), tmp_path, "csk")
    assert best["selection"]["split"] == "holdout"


@pytest.mark.parametrize("name", ["mfnet", "msrs", "pst900", "synthetic"])
def test_shipped_configs_select_on_a_validation_split(name):
    cfg = load_config(ROOT / "training" / "configs" / f"{name}.yaml")
    assert cfg["train"]["eval_split"] in ("val", "holdout")


def test_resume_reseeds_other_ranks_from_the_restored_step(tmp_path, monkeypatch):
    """Bug: ranks > 0 were re-seeded from `step` before it was restored (always
    0), so every resume replayed the same random stream on those ranks."""
    import training.train as train_module

    def stream_after(step):
        train_module.restore_rng({"rng_state": torch.get_rng_state()}, seed=0, rank=1, step=step)
        return torch.rand(4)

    assert torch.equal(stream_after(7), stream_after(7))
    assert not torch.equal(stream_after(7), stream_after(0))

    cfg = tiny_config()
    cfg["train"]["max_steps"] = 2
    train(cfg, tmp_path, "csk")
    seen = []
    real = train_module.restore_rng
    monkeypatch.setattr(train_module, "restore_rng", lambda ckpt, seed, rank, step: (seen.append(step),
                                                                                      real(ckpt, seed, rank, step)))
    cfg["train"]["max_steps"] = 4
    train(cfg, tmp_path, "csk", resume=True)
    assert seen == [2], "RNG must be restored with the checkpoint's step"


def test_cuda_rng_state_is_saved_and_restored_where_cuda_exists(monkeypatch):
    import training.train as train_module

    assert train_module.rng_state()["cuda_rng_state"] is None or torch.cuda.is_available()
    fake, restored = torch.arange(8, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda *a, **k: fake)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, *a, **k: restored.append(state))
    saved = train_module.rng_state()
    assert torch.equal(saved["cuda_rng_state"], fake)
    train_module.restore_rng(saved, seed=0, rank=0, step=3)
    assert len(restored) == 1 and torch.equal(restored[0], fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CUDA checkpoint resumed on a CPU machine
    train_module.restore_rng(saved, seed=0, rank=0, step=3)
    assert len(restored) == 1


def test_csk_selection_weighs_fused_and_ir_only(tmp_path, monkeypatch):
    """best.pt must not trade the IR-only fallback for fused mIoU: the score is their mean."""
    import training.train as train_module

    scripted = {2: {"fused": 0.60, "ir_only": 0.10}, 4: {"fused": 0.55, "ir_only": 0.40}}
    evals = []

    def fake_validate(objective, loader, mode, dataset, device, max_batches, dist_info):
        step = 2 * (len(evals) // 2 + 1)
        evals.append((step, mode))
        return {"miou": scripted[step][mode]}

    monkeypatch.setattr(train_module, "validate", fake_validate)
    cfg = tiny_config()
    cfg["train"].update(max_steps=4, eval_every=2)
    best = train(cfg, tmp_path, "csk")
    assert evals == [(2, "fused"), (2, "ir_only"), (4, "fused"), (4, "ir_only")]
    assert best["step"] == 4 and best["miou_by_mode"] == {"fused": 0.55, "ir_only": 0.40}
    assert best["score"] == pytest.approx(0.475)
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 4
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best"]["step"] == 4 and "exchanged_fraction" in metrics["best"]
    assert set(metrics["best"]["exchanged_fraction"]) == {"eo", "ir"}


def test_teacher_stage_trains_on_its_own_data_overrides(tmp_path):
    """The EO teacher learns where EO carries information: teacher.data overrides
    `data` for --stage teacher only (synthetic.yaml: day frames only)."""
    shipped = load_config(ROOT / "training" / "configs" / "synthetic.yaml")
    assert shipped["teacher"]["data"] == {"night_fraction": 0.0}
    cfg = tiny_config()
    cfg["teacher"]["data"] = {"night_fraction": 0.0}
    cfg["train"]["max_steps"] = 1
    train(cfg, tmp_path / "teacher", "teacher")
    assert load_checkpoint(tmp_path / "teacher" / "best.pt")["config"]["data"]["night_fraction"] == 0.0
    assert cfg["data"].get("night_fraction", 0.5) == 0.5  # the other stages keep the configured data
    cfg["teacher"]["data"] = {"night_fractoin": 0.0}
    with pytest.raises(ValueError, match="night_fractoin"):
        train(cfg, tmp_path / "typo", "teacher")
    with pytest.raises(ValueError, match="teacher.data' must be a mapping"):
        load_config(ROOT / "training" / "configs" / "synthetic.yaml", ["teacher.data=day"])


def ir_path_scales_below_threshold(model) -> int:
    """How many BatchNorm scales of the deployed IR-only path are below the exchange threshold."""
    from training.model.csknet import ir_path_batchnorms

    return int(sum((bn.weight.abs() < model.cfg["exchange_threshold"]).sum()
                   for bn in ir_path_batchnorms(model).values()))


@pytest.mark.parametrize("steps", [4, 8])
def test_exchange_fires_in_training_whatever_the_run_length(tmp_path, steps):
    """With AdamW the gamma sparsity runs as a proximal step whose total
    (loss.gamma_prox_budget) is spread over the run's lr schedule, so the
    designated EO half becomes exchangeable in a short run as in a long one,
    and (issue "Method v2") the sparsity at full budget never switches off a
    channel of the deployed IR-only path."""
    cfg = tiny_config()
    cfg["optim"].update(name="adamw", lr=0.003)
    cfg["train"].update(max_steps=steps, eval_every=steps)
    best = train(cfg, tmp_path, "csk")
    fractions = best["exchanged_fraction"]
    assert fractions["eo"]["all"] > 0.4 and max(fractions["eo"].values()) <= 0.5  # only the designated EO half
    assert max(fractions["ir"].values()) == 0.0  # exchange runs into EO only
    assert ir_path_scales_below_threshold(model_from_checkpoint(tmp_path / "last.pt")[0]) == 0
    # the defect it fixes: CEN's symmetric split zeroes half of the IR-only path's exchange scales
    cen = dict(cfg, model=dict(cfg["model"], exchange_direction="both"))
    assert train(cen, tmp_path / "cen", "csk")["exchanged_fraction"]["ir"]["all"] > 0.4
    assert ir_path_scales_below_threshold(model_from_checkpoint(tmp_path / "cen" / "last.pt")[0]) > 0
    cfg["loss"]["gamma_l1_mode"] = "loss"  # CEN's loss term under AdamW: nothing moves far enough
    assert train(cfg, tmp_path / "loss_term", "csk")["exchanged_fraction"]["eo"]["all"] == 0.0


def test_the_eo_teacher_never_trains_on_eo_dropout_frames(tmp_path, monkeypatch):
    """A blacked-out frame teaches an EO-only model the class prior, which it would then distil:
    the teacher stage drops `data.augment.eo_dropout`, the other stages keep it."""
    import training.train as train_module

    cfg = tiny_config()
    cfg["data"]["augment"]["eo_dropout"] = 1.0  # every training frame of the other stages is dropped
    cfg["train"]["max_steps"] = 2
    seen = {}
    original = train_module.train_step

    def spy(run, batch):
        seen.setdefault(run.stage, []).extend(batch["eo_dropped"].tolist())
        return original(run, batch)

    monkeypatch.setattr(train_module, "train_step", spy)
    train(cfg, tmp_path / "teacher", "teacher")
    assert seen["teacher"] and not any(seen["teacher"])
    assert load_checkpoint(tmp_path / "teacher" / "best.pt")["config"]["data"]["augment"]["eo_dropout"] == 0.0
    train(dict(cfg, model=dict(cfg["model"], arch="deeplabv3", modality="ir")), tmp_path / "ir", "baseline")
    assert seen["baseline"] and all(seen["baseline"])
