"""Experiment configuration: YAML file + `key.sub=value` overrides, with
defaults per section and unknown keys rejected (a typo must not silently
train the wrong thing)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .losses import LOSS_DEFAULTS
from .model.csknet import DEFAULTS as MODEL_DEFAULTS

OPTIM_DEFAULTS = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "poly_power": 0.9}
TRAIN_DEFAULTS = {
    "epochs": 1,
    "max_steps": None,  # overrides epochs when set
    "batch_size": 8,
    "num_workers": 2,
    "eval_every": None,  # steps; None = once per epoch
    # Model selection (best.pt) split: a validation split, never test. "holdout"
    # = a fixed `holdout_fraction` of the train split, removed from training
    # (for datasets without val: PST900, MSRS as distributed). Selecting on a
    # test split needs `--allow-test-selection` and is recorded in the outputs.
    "eval_split": "val",
    "holdout_fraction": 0.1,
    # Hold out every k-th image of the (sorted) train list instead of a random
    # fraction: MFNet's val split is every 5th frame, so a stride hold-out is
    # to train what val is (the same drives, near but not equal views): a
    # tuning split that ranks settings the way val would, without touching val.
    "holdout_stride": None,
    "eval_max_batches": None,
    "log_every": 10,
    "seed": 0,
    "amp": True,  # CUDA only
    "sync_bn": False,  # DDP only
    "grad_clip": None,
}
TEACHER_DEFAULTS = {
    "checkpoint": None,  # the EO teacher's best.pt, for --stage csk
    # Overrides of the `data` section for --stage teacher only: train the EO
    # teacher where EO carries information (a teacher weaker than its student
    # teaches nothing), e.g. {night_fraction: 0.0} on the synthetic set, or a
    # day-only root/list on a real one. Validated like `data`.
    "data": {},
}
FREE_FORM = {"teacher.data"}  # mappings whose keys are validated elsewhere (build_dataset)

SECTIONS = {
    "data": None,  # validated by training.data.build_dataset
    "model": MODEL_DEFAULTS,
    "loss": LOSS_DEFAULTS,
    "optim": OPTIM_DEFAULTS,
    "train": TRAIN_DEFAULTS,
    "teacher": TEACHER_DEFAULTS,
}


def _merge(defaults: dict, values: dict, where: str) -> dict:
    out = copy.deepcopy(defaults)
    for key, value in values.items():
        if key not in defaults:
            raise ValueError(f"unknown config key '{where}.{key}'; known: {sorted(defaults)}")
        if f"{where}.{key}" in FREE_FORM:
            if not isinstance(value, dict):
                raise ValueError(f"config key '{where}.{key}' must be a mapping, got {value!r}")
            out[key] = copy.deepcopy(value)
        elif isinstance(defaults[key], dict) and isinstance(value, dict):
            out[key] = _merge(defaults[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def apply_override(cfg: dict, override: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML."""
    if "=" not in override:
        raise ValueError(f"override must look like key.sub=value, got {override!r}")
    dotted, raw = override.split("=", 1)
    keys = dotted.strip().split(".")
    node = cfg
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {override!r}: {key!r} is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def complete(raw: dict) -> dict:
    """Fill every section's defaults and reject unknown sections/keys."""
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; known: {sorted(SECTIONS)}")
    if "data" not in raw or not isinstance(raw["data"], dict):
        raise ValueError("config needs a 'data' section (data.name: synthetic|mfnet|pst900|msrs)")
    cfg = {"data": copy.deepcopy(raw["data"])}
    for name, defaults in SECTIONS.items():
        if defaults is not None:
            cfg[name] = _merge(defaults, raw.get(name) or {}, name)
    return cfg


def load_config(path: str | Path, overrides: list[str] | tuple = ()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"config {path} must be a mapping of sections")
    for override in overrides:
        apply_override(raw, override)
    return complete(raw)
