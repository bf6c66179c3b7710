"""The segment node's ROS parameters: declared from the one table (csk_ros.logic.config.PARAMS) with
descriptors that carry each range, and checked on `ros2 param set` by the start-up rules.

Live parameters (PARAMS' `live`) take effect on the next frame; the others are declared read-only, so
rclpy refuses a change to them with "Trying to set a read-only parameter".
"""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from csk_ros.logic.config import PARAMS, SPECS, NodeConfig, build_config, check_value, parse_homography

ROS_OWN_PARAMS = {"use_sim_time", "start_type_description_service"}


def descriptor_for(spec) -> ParameterDescriptor:
    suffix = " (live: `ros2 param set` applies it to the next frame)" if spec.live else " (read-only after start-up)"
    descriptor = ParameterDescriptor(description=spec.description + suffix, read_only=not spec.live)
    if spec.choices:
        descriptor.additional_constraints = f"one of {list(spec.choices)}"
    if spec.min_value is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value),
                                                 step=1)]
    elif spec.min_value is not None and isinstance(spec.default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                              to_value=float(spec.max_value), step=0.0)]
    return descriptor


def declare_all(node) -> None:
    """Declare every parameter; raise ValueError naming a bad value or an unknown (misspelt) override."""
    for spec in PARAMS:
        try:
            node.declare_parameter(spec.name, spec.default, descriptor_for(spec))
        except Exception as exc:  # rclpy raises several types for a bad YAML value
            raise ValueError(f"parameter '{spec.name}': {exc} ({spec.description})") from exc
    # rclpy silently drops overrides nobody declares, so a typo in a params
    # file would go unnoticed; its override table is the only place to see them.
    given = set(getattr(node, "_parameter_overrides", {}) or {})
    if any(name.startswith("qos_overrides.") for name in given):
        node.get_logger().warning("qos_overrides.* are not supported by this node; use its 'qos' and "
                                  "'qos_depth' parameters")
    unknown = sorted(n for n in given - set(SPECS) - ROS_OWN_PARAMS if not n.startswith("qos_overrides."))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}: check the spelling in the params file / command line "
                         "(known: see config/segment.yaml)")


def current_values(node) -> dict:
    return {spec.name: node.get_parameter(spec.name).value for spec in PARAMS}


def config_after(node, changes: dict, configured: bool) -> NodeConfig | None:
    """The config the node would run with `changes` applied, validated by the start-up rules; ValueError
    says why a change is refused. Before configure (a lifecycle node waiting) only each value's own range is
    checked: the rules between parameters (model_dir required, sync_slop_s below the IR timeout) are for
    configure to apply, so the parameters can be set in any order. None then."""
    ours = {name: value for name, value in changes.items() if name in SPECS}
    if configured:  # build_config applies every value's own check too
        return build_config({**current_values(node), **ours})
    for name, value in ours.items():
        check_value(SPECS[name], value)
        if name == "eo_to_ir_homography":
            parse_homography(value)
    return None
