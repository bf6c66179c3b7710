"""The adaptation's record (checkpoint, adapt.json, TensorBoard) and the summary table printed at the end."""

from __future__ import annotations

import math
import resource

import numpy as np

SIGNAL_ROWS = (("fused_miou_day", "mIoU of IR-only against fused, day pairs"),
               ("fused_miou_night", "mIoU of IR-only against fused, night pairs"),
               ("agreement_day", "IR-only = fused, day pairs"), ("agreement_night", "IR-only = fused, night pairs"),
               ("confidence_ir_only", "mean confidence, IR-only"), ("confidence_fused", "mean confidence, fused"),
               ("share_gap", "class-share gap IR-only vs fused (L1)"))


def plain(value):
    """numpy scalars and arrays -> Python numbers and lists, so torch.load(weights_only=True) reads the record."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _pct_sign(value) -> str:
    text = _pct(value)
    return text if text == "n/a" else text + "%"


def _delta(before, after) -> str:
    if before is None or after is None:
        return ""
    return f"{100 * (after - before):+.1f}"


def _table(header: tuple, rows: list) -> list[str]:
    return [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *(f"| {' | '.join(r)} |" for r in rows)]


def steps_lines(steps: dict) -> list[str]:
    rows = []
    adabn = steps.get("adabn")
    rows.append(("AdaBN", f"{adabn['batchnorms']} IR-path BatchNorms re-estimated on {adabn['frames']} target frames"
                 if adabn else "off"))
    st = steps.get("selftrain")
    if st:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        rows.append(("self-training", f"{st['steps']} steps, teacher: {st['teacher']}; "
                     f"loss {fmt(st['loss_first'])} -> {fmt(st['loss_last'])}; student = teacher on taught pixels "
                     f"{_pct_sign(st['agreement_first'])} -> {_pct_sign(st['agreement_last'])}; pixels taught: "
                     f"day {_pct_sign(st['kept_day'])}, night {_pct_sign(st['kept_night'])}"))
        if steps.get("adabn_final"):
            rows.append(("AdaBN (final weights)", f"re-estimated on {steps['adabn_final']['frames']} frames"))
    else:
        rows.append(("self-training", "off"))
    return _table(("step", "what happened"), rows)


def signal_lines(before: dict, after: dict) -> list[str]:
    rows = [(label, _pct(before.get(key)), _pct(after.get(key)), _delta(before.get(key), after.get(key)))
            for key, label in SIGNAL_ROWS if key in before]
    for name, share in before["class_share_ir_only"].items():
        late = after["class_share_ir_only"][name]
        rows.append((f"share of {name}, IR-only", _pct(share), _pct(late), _delta(share, late)))
    return _table((f"label-free, {before['pairs']} target pairs ({before['day_pairs']} day) %", "before", "after",
                   "change"), rows)


def labelled_lines(before: dict, after: dict) -> list[str]:
    rows = []
    for name, modes in before.items():
        for mode, m in modes.items():
            late = after[name][mode]["miou"]
            rows.append((f"{name} ({m['frames']} frames)", mode, _pct(m["miou"]), _pct(late), _delta(m["miou"], late)))
    return _table(("labelled set", "mode", "mIoU before", "after", "change"), rows)


def summary(record: dict) -> str:
    lines = ["", f"adapted {record['from_checkpoint']} on {record['target']['pairs']} pairs "
             f"({record['target']['night']} night) from {record['target']['origin']}", ""]
    lines += steps_lines(record["steps"]) + [""]
    lines += signal_lines(record["signals"]["before"], record["signals"]["after"]) + [""]
    if record.get("labelled"):
        lines += labelled_lines(record["labelled"]["before"], record["labelled"]["after"]) + [""]
    lines.append(f"wall {record['wall_s']:.0f} s, peak RSS {record['peak_rss_mb']:.0f} MB -> {record['out']}")
    return "\n".join(lines)


def log_measurements(writer, step: int, signals: dict, labelled: dict | None) -> None:
    """The before (step 0) and after (last step) measurements as TensorBoard scalars."""
    for key, _ in SIGNAL_ROWS:
        if signals.get(key) is not None:
            writer.add_scalar(f"signals/{key}", signals[key], step)
    for name, modes in (labelled or {}).items():
        for mode, m in modes.items():
            writer.add_scalar(f"val_{name}/miou_{mode}", m["miou"], step)
