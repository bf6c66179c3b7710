"""benchmarks/quality.py: the --quick study end to end (tables, JSON, resume) and its statistics."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import quality
from training.checkpoint import load_checkpoint
from training.data.classes import MFNET_CLASSES

pytestmark = pytest.mark.slow

QUICK = ["--quick", "--seeds", "1", "--variants", "eo_teacher,csk_full", "--settings", "full"]


def test_quick_study_writes_json_markdown_chart_and_resumes(tmp_path, monkeypatch, capsys):
    assert quality.main(QUICK + ["--out", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert "2 runs planned, 0 already done (skipped), 2 to run" in first

    data = json.loads((tmp_path / "quality.json").read_text())
    assert {r["key"] for r in data["runs"]} == {"full/eo_teacher/seed0", "full/csk_full/seed0"}
    rows = {(r["variant"], r["mode"]): r for r in data["rows"]}
    assert set(rows) == {("eo_teacher", "eo_only"), ("csk_full", "fused"), ("csk_full", "ir_only")}
    for row in rows.values():
        for split in ("test", "test_day", "test_night"):
            stat = row["miou"][split]
            assert stat["n"] == 1 and 0.0 <= stat["mean"] <= 1.0 and stat["std"] == 0.0
        assert list(row["per_class_iou"]["test"]) == list(MFNET_CLASSES)
    assert data["meta"]["quick"] and data["meta"]["seeds"] == [0]

    # the student was distilled from the same seed's teacher
    records = json.loads((tmp_path / "runs.json").read_text())
    student = records["full/csk_full/seed0"]
    assert student["teacher"] == "full/eo_teacher/seed0"
    teacher_ckpt = load_checkpoint(student["checkpoint"])["config"]["teacher"]["checkpoint"]
    assert teacher_ckpt == records["full/eo_teacher/seed0"]["checkpoint"]
    # every run is scored on the same test scenes, whatever data its training used
    counts = {(k, m): {s: v["num_images"] for s, v in per_mode.items()}
              for k, r in records.items() for m, per_mode in r["metrics"].items()}
    assert len({tuple(c.items()) for c in counts.values()}) == 1, counts
    assert all(c["test"] == c["test_day"] + c["test_night"] and c["test_night"] > 0 for c in counts.values())

    md = (tmp_path / "quality.md").read_text()
    for needle in ("| model | mode | mIoU test | mIoU day | mIoU night | seeds |",
                   "| EO-only DeepLabV3 (teacher) | eo_only |",
                   "| CSK-Net | fused |", "| CSK-Net | ir_only |", "| curve |", "QUICK"):
        assert needle in md, needle
    assert (tmp_path / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the validation curve and where best.pt came from are on the record
    curve = records["full/csk_full/seed0"]["curve"]
    assert [p["step"] for p in curve] == [2] and set(curve[0]["miou_by_mode"]) == {"fused", "ir_only"}
    assert "best.pt's step against the run's last evaluation" in md and "| score by step | 2 |" in md

    # rerun: every finished run is skipped, nothing is trained again, records unchanged
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(quality, "train_run", no_training)
    assert quality.main(QUICK + ["--out", str(tmp_path)]) == 0
    assert "2 runs planned, 2 already done (skipped), 0 to run" in capsys.readouterr().out
    assert json.loads((tmp_path / "runs.json").read_text()) == records


def test_a_changed_configuration_is_not_skipped(tmp_path):
    """The resume key is the resolved config (and the teacher's): different overrides, different runs."""
    def fingerprints(extra):
        runs = quality.plan_runs([0], ["full"], ["csk_full"], tmp_path, True, extra)
        fps = {}
        for run in runs:
            teacher = next((r.out / "best.pt" for r in runs if r.key == run.teacher_key), None)
            fps[run.key] = quality.fingerprint(quality.resolved_config(run, teacher), fps.get(run.teacher_key))
        return fps

    base, changed = fingerprints([]), fingerprints(["optim.lr=0.001"])
    assert list(base) == ["full/eo_teacher/seed0", "full/csk_full/seed0"]  # teacher added, and first
    assert all(base[k] != changed[k] for k in base)
    assert fingerprints([]) == base
    cfg = quality.resolved_config(quality.plan_runs([0], ["full"], ["ir_baseline"], tmp_path, True, [])[0], None)
    assert quality.fingerprint(cfg, None, "code-a") != quality.fingerprint(cfg, None, "code-b")


def test_plan_covers_the_study():
    runs = quality.plan_runs(quality.parse_seeds("3"), list(quality.SETTINGS), list(quality.VARIANTS),
                             quality.RESULTS, False, [])
    assert len(runs) == 3 * (11 + 3)  # the eleven study variants and the low-data three; no sweep candidate
    assert not {r.variant for r in runs} & set(quality.SWEEP)
    assert {r.seed for r in runs} == {0, 1, 2}
    low = [r for r in runs if r.setting == "low_data"]
    assert {r.variant for r in low} == {"eo_teacher", "ir_baseline", "csk_full"}
    assert all("data.num_train=128" in r.overrides for r in low)
    for run in runs:  # every configuration resolves (a renamed config key fails here, not mid-study)
        quality.resolved_config(run, None)
        if quality.VARIANTS[run.variant].teacher:
            teacher_index = next(i for i, r in enumerate(runs) if r.key == run.teacher_key)
            assert teacher_index < runs.index(run)


def test_the_real_data_sweep_runs_only_in_the_tune_setting():
    """Candidates are compared on the train hold-out, never on val: none of them is planned in 'full'."""
    runs = quality.plan_runs([0], ["full", "tune"], list(quality.VARIANTS), quality.RESULTS, False, [],
                             study="mfnet")
    full = {r.variant for r in runs if r.setting == "full"}
    tune = [r for r in runs if r.setting == "tune"]
    assert len(full) == 11 and not full & set(quality.SWEEP)
    assert set(quality.SWEEP) <= {r.variant for r in tune}
    assert all("train.eval_split=holdout" in r.overrides for r in tune)
    assert not any("train.eval_split=holdout" in r.overrides for r in runs if r.setting == "full")


def test_no_kd_turns_off_every_distillation_term_and_trains_without_a_teacher(tmp_path):
    from training.losses import LOSS_DEFAULTS

    [run] = quality.plan_runs([0], ["full"], ["no_kd"], tmp_path, True, [])
    assert run.teacher_key is None
    cfg = quality.resolved_config(run, None)
    assert cfg["teacher"]["checkpoint"] is None
    weights = {
        k: v for k, v in cfg["loss"].items() if k.startswith("kd_") and k not in ("kd_temperature", "kd_confidence")
    }
    assert {"kd_feature", "kd_logit"} <= set(weights) and not any(weights.values()), weights
    assert cfg["loss"]["kd_temperature"] == LOSS_DEFAULTS["kd_temperature"]  # settings stay
    assert quality.main(["--quick", "--seeds", "1", "--variants", "no_kd", "--settings", "full",
                         "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "runs.json").read_text())["full/no_kd/seed0"]["teacher"] is None


def test_parse_seeds():
    assert quality.parse_seeds("3") == [0, 1, 2]
    assert quality.parse_seeds("3,5") == [3, 5]
    with pytest.raises(ValueError, match="seeds"):
        quality.parse_seeds("1,1")


def _record(variant, modes, seed, miou, setting="full"):
    per_split = {"miou": miou, "miou_no_unlabeled": miou, "pixel_acc": 0.9,
                 "per_class_iou": {c: miou for c in MFNET_CLASSES}}
    return {"setting": setting, "variant": variant, "seed": seed, "val": {"miou": miou},
            "metrics": {mode: {s: per_split for s in quality.SPLITS} for mode in modes}}


def test_aggregate_uses_sample_std_and_targets_need_a_gap_beyond_both_stds():
    records = [_record("ir_baseline", ["ir_only"], s, v) for s, v in enumerate((0.40, 0.41, 0.42))]
    records += [_record("csk_full", ["fused", "ir_only"], s, v) for s, v in enumerate((0.43, 0.44, 0.45))]
    rows = quality.aggregate(records)
    base = next(r for r in rows if r["variant"] == "ir_baseline")
    assert math.isclose(base["miou"]["test"]["mean"], 0.41) and math.isclose(base["miou"]["test"]["std"], 0.01)
    assert base["per_class_iou"]["test_night"]["curve"]["n"] == 3
    ir_target = next(t for t in quality.targets(rows) if "IR baseline + 2" in t["target"])
    assert ir_target["met"] is True and ir_target["value"].startswith("+3.0")

    records = [r for r in records if r["variant"] != "csk_full"]
    records += [_record("csk_full", ["fused", "ir_only"], s, v) for s, v in enumerate((0.40, 0.43, 0.46))]
    ir_target = next(t for t in quality.targets(quality.aggregate(records)) if "IR baseline + 2" in t["target"])
    assert ir_target["met"] is False  # +2.0 mean gap, but within the student's std of 3.0


def test_report_only_trains_nothing_and_reports_what_runs_json_holds(tmp_path):
    assert quality.main(["--quick", "--seeds", "1", "--variants", "ir_baseline", "--settings", "full",
                         "--out", str(tmp_path)]) == 0
    before = (tmp_path / "runs.json").read_text()
    assert quality.main(["--quick", "--seeds", "0,1", "--variants", "ir_baseline,early_fusion", "--settings", "full",
                         "--out", str(tmp_path), "--report-only"]) == 0
    assert (tmp_path / "runs.json").read_text() == before  # nothing trained
    report = json.loads((tmp_path / "report_full.json").read_text())
    assert [(r["variant"], r["seeds"]) for r in report["rows"]] == [("ir_baseline", [0])]


def test_the_fallback_target_is_paired_by_seed_and_needs_every_seed_positive():
    base = [_record("ir_baseline", ["ir_only"], s, v) for s, v in enumerate((0.40, 0.30, 0.50))]
    # +3 on average, but seed 1 is worse than its own baseline: a mean over unpaired seeds would hide it
    csk = [_record("csk_full", ["fused", "ir_only"], s, v) for s, v in enumerate((0.45, 0.29, 0.55))]
    pairs = quality.paired_differences(base + csk)
    [pair] = [p for p in pairs if p["a"] == "csk_full ir_only" and p["b"] == "ir_baseline ir_only"]
    assert pair["seeds"] == [0, 1, 2] and [round(d, 6) for d in pair["diffs"]] == [0.05, -0.01, 0.05]
    assert math.isclose(pair["mean"], 0.03) and not pair["positive_on_every_seed"]
    target = next(t for t in quality.targets(quality.aggregate(base + csk), pairs=pairs) if "paired" in t["target"])
    assert target["met"] is False and target["value"] == "+3.00 (+5.0, -1.0, +5.0)"
    csk[1] = _record("csk_full", ["fused", "ir_only"], 1, 0.33)
    pairs = quality.paired_differences(base + csk)
    target = next(t for t in quality.targets(quality.aggregate(base + csk), pairs=pairs) if "paired" in t["target"])
    assert target["met"] is True
    headers, body = quality.paired_table(pairs, "full")
    assert headers[:4] == ["a - b (mIoU points)", "seed 0", "seed 1", "seed 2"] and body[0][-1] == "yes"
