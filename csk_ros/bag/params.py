"""The node's parameters for an offline run: the same YAML file `--params-file` takes, the same rules."""

from __future__ import annotations

from pathlib import Path

import yaml

from csk_ros.logic.config import NodeConfig, build_config

NODE_KEYS = ("/**", "segment_node", "/segment_node", "**")


def _flatten(values: dict, prefix: str = "") -> dict:
    """ROS params files nest namespaces (health: {eo_timeout_s: ..}); the node's names are dotted."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def read_params_file(path: Path | None, node_name: str = "segment_node") -> dict:
    """name -> value from a ROS 2 parameters file (the `/**` and the node's own sections, the node's last)."""
    if path is None:
        return {}
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"--params {path}: cannot read it ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"--params {path}: expected a ROS 2 parameters file (<node>: ros__parameters: ...)")
    values = {}
    for key in NODE_KEYS + (node_name, f"/{node_name}"):
        section = doc.get(key)
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            values.update(_flatten(section["ros__parameters"]))
    if not values and doc:
        raise ValueError(f"--params {path}: no ros__parameters under {', '.join(NODE_KEYS)} or {node_name}")
    return values


def offline_config(params_file: Path | None, overrides: dict, node_name: str = "segment_node") -> NodeConfig:
    """NodeConfig from the file plus the command line's choices (bundle, backend, precision, transports),
    validated by the node's own rules. Parameters with no meaning offline (qos, ...) are accepted and unused."""
    values = read_params_file(params_file, node_name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(values)
