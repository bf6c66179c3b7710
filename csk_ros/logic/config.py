"""The segment node's parameters: one table of (name, default, description,
range) used both to declare them in ROS (with descriptors) and to validate
them here, without ROS, so a bad value fails at start-up with a message that
names the parameter and says what is allowed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from csk_ros.imaging.thermal import ThermalScaling
from csk_ros.logic.health import HEALTH_LIMITS, HealthParams


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    choices: tuple = ()
    min_value: float | None = None
    max_value: float | None = None
    live: bool = False  # `ros2 param set` takes effect on the next frame; the rest are read-only after start-up


_H = HealthParams()


HEALTH_DESCRIPTIONS = {  # the node's health.* parameters; their bounds: HEALTH_LIMITS
    "eo_timeout_s": "EO is stale after this long without a frame (s).",
    "ir_timeout_s": "IR is stale after this long; no masks, diagnostics ERROR (s).",
    "dark_luma_mean": "A frame is dark when its mean luma is below this ...",
    "dark_bright_level": "... and fewer than dark_bright_fraction of pixels reach this luma.",
    "dark_bright_fraction": "See dark_bright_level.",
    "dark_frames": "Consecutive dark frames before EO counts as dark.",
    "saturated_level": "Luma counted as saturated.",
    "saturated_fraction": "Fraction of saturated pixels that makes a frame saturated.",
    "saturated_frames": "Consecutive saturated frames before EO counts as saturated.",
    "frozen_frames": "Identical EO frames in a row that mean frozen (0 = off).",
    "frozen_max_mean_abs_diff": "Mean |luma difference| at or below which two frames count as identical.",
    "recover_frames": "Healthy EO frames needed before returning to fused.",
    "stale_periods": "A stream is stale only after this many of its (estimated) frame periods as well as its "
                     "timeout: a lossy but alive stream does not go stale.",
}
PARAMS = (
    ParamSpec("model_dir", "", "Model bundle directory (manifest.json + ONNX graphs + optional TensorRT engines). "
              "Settable while running: the new directory is loaded by the ~/reload_model service (or the next "
              "lifecycle configure), not by the set itself.", live=True),
    ParamSpec("lifecycle", False, "Run as a managed lifecycle node: wait in 'unconfigured' for configure and activate "
              "(nav2_lifecycle_manager, or launch lifecycle:=true autostart:=true) instead of starting at once."),
    ParamSpec("backend", "auto", "Inference backend; auto = TensorRT when usable, else ONNX Runtime.",
              ("auto", "tensorrt", "onnxruntime")),
    ParamSpec("precision", "fp32", "fp32 | int8. int8 runs the bundle's INT8 Q/DQ graphs (made by `python -m "
              "engines.quantize`, accuracy-gated) on ONNX Runtime, or INT8 engines built from them with TensorRT; a "
              "bundle without them fails at start-up.", ("fp32", "int8")),
    ParamSpec("rebuild_engines", False, "Rebuild stale TensorRT engines from the bundle's ONNX at start-up."),
    ParamSpec("ort_threads", 0, "ONNX Runtime intra-op threads (0 = one per core).", min_value=0, max_value=256),
    ParamSpec("ort_spinning", False, "Let ONNX Runtime's threads busy-wait between inferences: a little less latency "
              "for up to a core of CPU taken from decoding and the camera drivers."),
    ParamSpec("qos", "sensor_data", "Input QoS: sensor_data (best effort, depth 5) or reliable.",
              ("sensor_data", "reliable")),
    ParamSpec("qos_depth", 5, "Input subscription queue depth.", min_value=1, max_value=100),
    ParamSpec("eo_transport", "raw", "EO input: raw (sensor_msgs/Image on eo/image) or compressed "
              "(sensor_msgs/CompressedImage, JPEG/PNG, on <resolved eo/image>/compressed, as image_transport "
              "names it).",
              ("raw", "compressed")),
    ParamSpec("ir_transport", "raw", "IR input: raw (sensor_msgs/Image on ir/image) or compressed "
              "(sensor_msgs/CompressedImage, PNG 8/16-bit, on <resolved ir/image>/compressed).", ("raw", "compressed")),
    ParamSpec("loss_warn_fraction", 0.03, "Diagnostics WARN when this fraction of a stream's frames (gaps in its "
              "stamps) is lost in transport.", min_value=0.0, max_value=1.0, live=True),
    ParamSpec("sync_slop_s", 0.05, "Max |EO stamp - IR stamp| for a fused pair; also the longest wait for a late EO. "
              "0.05 s rides out EO arriving up to 50 ms after its IR twin (large colour frames, busy CPUs) and, at "
              "30 Hz, admits the neighbouring EO frame when the exact one is lost.",
              min_value=0.0, max_value=1.0, live=True),
    ParamSpec("eo_to_ir_homography", [0.0], "Row-major 3x3 homography mapping EO pixels to IR pixels; [0.0] = "
              "cameras co-aligned (EO is only resized).", live=True),
    ParamSpec("output_size", "ir", "Size of published masks: ir (IR image size, nearest-neighbour) or model.",
              ("ir", "model")),
    ParamSpec("confidence_threshold", 0.0, "Confidence (0-1; ~/confidence / 255) below which a pixel is low-"
              "confidence; published as vision_msgs/LabelInfo.threshold on ~/label_info.", min_value=0.0,
              max_value=1.0, live=True),
    ParamSpec("low_confidence_policy", "keep", "What ~/mask holds below confidence_threshold: keep (the class) or "
              "unlabeled (255, an id no class has, which planners ignore).",
              ("keep", "unlabeled"), live=True),
    ParamSpec("publish_points", False, "Publish ~/points, an organized semantic PointCloud2 at mask resolution, "
              "from depth/image (16UC1 mm or 32FC1 m, registered to the IR camera) and ir/camera_info."),
    ParamSpec("depth_min_m", 0.05, "Depth below this (m) is invalid: its point is NaN.", min_value=0.0,
              max_value=1000.0),
    ParamSpec("depth_max_m", 30.0, "Depth above this (m) is invalid: its point is NaN.", min_value=0.0,
              max_value=1000.0),
    ParamSpec("overlay_alpha", 0.5, "Weight of the class colours in ~/overlay.", min_value=0.0, max_value=1.0,
              live=True),
    ParamSpec("diagnostics_period_s", 1.0, "Period of /diagnostics.", min_value=0.05, max_value=60.0, live=True),
    ParamSpec("hardware_id", "", "hardware_id reported in /diagnostics.", live=True),
    ParamSpec("registration.check_period_s", 1.0, "Seconds between background checks of the EO-to-IR registration "
              "on the latest fused pair (edge alignment; off the inference path); 0 = off.", min_value=0.0,
              max_value=3600.0, live=True),
    ParamSpec("registration.warn_px", 6.0, "/diagnostics WARNs when the median misregistration of the recent "
              "checks exceeds this many IR pixels (about where a fused model starts to read EO from the wrong "
              "object at 640 px; see docs/registration.md).", min_value=0.5, max_value=1000.0, live=True),
    ParamSpec("thermal.mode", "", "mono16/32FC1 IR scaling: fixed or percentile; empty = the bundle's training rule.",
              ("", "fixed", "percentile"), live=True),
    ParamSpec("thermal.low", 0.0, "fixed mode: raw value mapped to 0.", live=True),
    ParamSpec("thermal.high", 65535.0, "fixed mode: raw value mapped to 255.", live=True),
    ParamSpec("thermal.low_pct", 1.0, "percentile mode: percentile mapped to 0.", min_value=0.0, max_value=100.0,
              live=True),
    ParamSpec("thermal.high_pct", 99.0, "percentile mode: percentile mapped to 255.", min_value=0.0,
              max_value=100.0, live=True),
    *(ParamSpec(f"health.{name}", getattr(_H, name), description, (), *HEALTH_LIMITS[name], live=True)
      for name, description in HEALTH_DESCRIPTIONS.items()),
)
SPECS = {p.name: p for p in PARAMS}
LIVE_PARAMS = frozenset(p.name for p in PARAMS if p.live)


@dataclass
class NodeConfig:
    model_dir: str
    backend: str
    precision: str
    rebuild_engines: bool
    ort_threads: int
    ort_spinning: bool
    qos: str
    qos_depth: int
    eo_transport: str
    ir_transport: str
    loss_warn_fraction: float
    sync_slop_s: float
    homography: np.ndarray | None
    output_size: str
    overlay_alpha: float
    diagnostics_period_s: float
    confidence_threshold: float
    low_confidence_policy: str
    publish_points: bool
    depth_min_m: float
    depth_max_m: float
    hardware_id: str
    thermal_override: dict | None
    health: HealthParams = field(default_factory=HealthParams)
    lifecycle: bool = False
    registration_period_s: float = 1.0
    registration_warn_px: float = 6.0

    def thermal_rule(self, bundle_rule: dict) -> ThermalScaling:
        """The node's override if set, else the rule the model was trained with."""
        return ThermalScaling.from_dict(self.thermal_override if self.thermal_override else bundle_rule)


def check_value(spec: ParamSpec, value: Any) -> None:
    if isinstance(spec.default, bool) != isinstance(value, bool):
        raise ValueError(f"parameter '{spec.name}' must be a bool, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"parameter '{spec.name}' must be one of {list(spec.choices)}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"parameter '{spec.name}' must be finite, got {value!r}")
        if spec.min_value is not None and value < spec.min_value:
            raise ValueError(f"parameter '{spec.name}' must be >= {spec.min_value}, got {value!r}")
        if spec.max_value is not None and value > spec.max_value:
            raise ValueError(f"parameter '{spec.name}' must be <= {spec.max_value}, got {value!r}")


def parse_homography(values) -> np.ndarray | None:
    values = [float(v) for v in values]
    if values == [0.0] or not values:
        return None
    if len(values) != 9:
        raise ValueError(f"parameter 'eo_to_ir_homography' needs 9 numbers (row-major 3x3) or [0.0], got {len(values)}")
    h = np.array(values, np.float64).reshape(3, 3)
    if not np.all(np.isfinite(h)) or abs(np.linalg.det(h)) < 1e-12:
        raise ValueError("parameter 'eo_to_ir_homography' must be a finite, invertible 3x3 matrix")
    return h


def build_config(values: dict[str, Any]) -> NodeConfig:
    """Validate raw parameter values (name -> value) into a NodeConfig."""
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}")
    full = {name: values.get(name, spec.default) for name, spec in SPECS.items()}
    for name, spec in SPECS.items():
        check_value(spec, full[name])
    if not full["model_dir"]:
        raise ValueError("parameter 'model_dir' is required: the model bundle directory to load "
                         "(export one with `python -m engines.export`)")
    health = HealthParams.from_dict({k.split(".", 1)[1]: v for k, v in full.items() if k.startswith("health.")})
    if full["sync_slop_s"] >= health.ir_timeout_s:
        raise ValueError(f"parameter 'sync_slop_s' ({full['sync_slop_s']}) must be below 'health.ir_timeout_s' "
                         f"({health.ir_timeout_s}): waiting for an EO partner must not outlast IR staleness")
    if full["depth_min_m"] >= full["depth_max_m"]:
        raise ValueError(f"parameter 'depth_min_m' ({full['depth_min_m']}) must be below 'depth_max_m' "
                         f"({full['depth_max_m']})")
    thermal = None
    if full["thermal.mode"]:
        thermal = {k.split(".", 1)[1]: v for k, v in full.items() if k.startswith("thermal.")}
        ThermalScaling.from_dict(thermal)  # validate now, not on the first mono16 frame
    return NodeConfig(
        model_dir=full["model_dir"], backend=full["backend"], precision=full["precision"],
        rebuild_engines=full["rebuild_engines"],
        ort_threads=int(full["ort_threads"]), ort_spinning=full["ort_spinning"], qos=full["qos"],
        qos_depth=int(full["qos_depth"]),
        eo_transport=full["eo_transport"], ir_transport=full["ir_transport"],
        loss_warn_fraction=float(full["loss_warn_fraction"]),
        sync_slop_s=float(full["sync_slop_s"]), homography=parse_homography(full["eo_to_ir_homography"]),
        output_size=full["output_size"], overlay_alpha=float(full["overlay_alpha"]),
        diagnostics_period_s=float(full["diagnostics_period_s"]), hardware_id=full["hardware_id"],
        confidence_threshold=float(full["confidence_threshold"]), low_confidence_policy=full["low_confidence_policy"],
        publish_points=full["publish_points"], depth_min_m=float(full["depth_min_m"]),
        depth_max_m=float(full["depth_max_m"]),
        thermal_override=thermal, health=health, lifecycle=full["lifecycle"],
        registration_period_s=float(full["registration.check_period_s"]),
        registration_warn_px=float(full["registration.warn_px"]),
    )


def parameter_table_markdown() -> str:
    """The parameter table of docs/ros_interface.md, generated from PARAMS (a test keeps the two equal)."""
    def allowed(spec: ParamSpec) -> str:
        if spec.choices:
            return " \\| ".join(f"`{c}`" for c in spec.choices)
        if spec.min_value is not None:
            return f"{spec.min_value:g} .. {spec.max_value:g}"
        return ""

    def default(spec: ParamSpec) -> str:
        value = spec.default
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        return (
            f"`{list(value)}`" if isinstance(value, (list, tuple))
            else f"`{value!r}`" if value == "" else f"`{value}`"
        )

    rows = ["| parameter | default | allowed | live | meaning |", "|---|---|---|---|---|"]
    rows += [f"| `{s.name}` | {default(s)} | {allowed(s)} | {'yes' if s.live else 'read-only'} | "
             f"{s.description.replace('|', '/')} |" for s in PARAMS]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m csk_ros.logic.config: print the table (docs/ros_interface.md)
    print(parameter_table_markdown(), end="")
