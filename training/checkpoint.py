"""Checkpoints: state dicts + config, loadable with `torch.load(weights_only=True)`
(checkpoints are untrusted input; no pickled objects)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, *, model_state: dict, config: dict, stage: str, step: int,
                    metrics: dict | None = None, extra: dict | None = None) -> None:
    """Write atomically (temp + rename) so a crash never leaves half a file."""
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model_state,
        "config": config,
        "stage": stage,
        "step": int(step),
        "metrics": metrics or {},
    }
    payload.update(extra or {})
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} could not be loaded safely (weights_only=True): {exc}") from exc
    for key in ("model", "config", "format_version"):
        if not isinstance(ckpt, dict) or key not in ckpt:
            raise ValueError(f"checkpoint {path} lacks '{key}': not a csk_ros training checkpoint")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise ValueError(f"checkpoint {path} has format {ckpt['format_version']}, this code reads <= {FORMAT_VERSION}")
    return ckpt


def model_from_checkpoint(path: str | Path, map_location="cpu"):
    """(model in eval mode, checkpoint dict). Pretrained loading is skipped:
    the checkpoint already holds the weights."""
    from .model import build_model

    ckpt = load_checkpoint(path, map_location)
    model_cfg = dict(ckpt["config"]["model"], pretrained=None)
    if model_cfg.get("arch", "csknet") == "csknet":  # trained before the direction existed: CEN's symmetric exchange
        model_cfg.setdefault("exchange_direction", "both")
    model = build_model(model_cfg)
    state = dict(ckpt["model"])
    for key in model.state_dict():  # checkpoints from before the IR path kept fused-pass BN statistics
        if ".fused_running_" in key and key not in state:
            state[key] = state[key.replace(".fused_running_", ".running_")].clone()
    model.load_state_dict(state)
    return model.eval(), ckpt
