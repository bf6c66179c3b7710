"""ros2 launch csk_ros segment.launch.py [model_dir:=DIR] [params_file:=FILE] [namespace:=NS]
[eo_topic:=TOPIC] [ir_topic:=TOPIC] [use_sim_time:=true] [log_level:=info] [dds_profile:=auto|none|FILE]
[publish_points:=true] [depth_topic:=TOPIC] [ir_camera_info_topic:=TOPIC]
[lifecycle:=true] [autostart:=true]

lifecycle:=true starts the node as a managed lifecycle node (parameter
`lifecycle: true`): it waits unconfigured for nav2_lifecycle_manager, or, with
autostart:=true, this launch configures it and activates it once inactive, the
way the lifecycle manager does (docs/ros_interface.md, Lifecycle).

publish_points / depth_topic / ir_camera_info_topic: the semantic cloud ~/points
for Nav2 from a depth image registered to the IR camera (docs/nav2.md).

dds_profile: the Fast DDS profile set (SetEnvironmentVariable) for the node and
for every process this launch starts after it, in the one variable the running
distribution's Fast DDS reads (FASTDDS_DEFAULT_PROFILES_FILE on Kilted and later,
FASTRTPS_DEFAULT_PROFILES_FILE on Humble / Jazzy; csk_ros/tools/dds_profile.py).
auto = a profile you already set in either variable, else the shipped
config/fastdds_large_frames.xml. The camera driver's process needs the same
profile (docs/dds.md)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    UnsetEnvironmentVariable,
)
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def dds_environment(context):
    """Resolve dds_profile at launch time (csk_ros.tools.dds_profile rules); a missing file fails the launch."""
    from csk_ros.tools.dds_profile import choose_profile, environment_for

    profile, why = choose_profile(LaunchConfiguration("dds_profile").perform(context))
    actions = [LogInfo(msg=f"csk_ros: Fast DDS profile: {profile or 'Fast DDS defaults'} ({why})")]
    for name, value in environment_for(profile).items():
        actions.append(UnsetEnvironmentVariable(name) if value is None else SetEnvironmentVariable(name, value))
    return actions


def flag(context, name: str) -> bool:
    value = LaunchConfiguration(name).perform(context).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name}:={value!r}: expected true or false")
    return value == "true"


def autostart_actions(managed):
    """configure now, activate once inactive: what nav2_lifecycle_manager does with autostart."""
    from launch.events import matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(managed),
                                           transition_id=transition_id))

    return [RegisterEventHandler(OnStateTransition(target_lifecycle_node=managed, goal_state="inactive",
                                                   entities=[change(Transition.TRANSITION_ACTIVATE)])),
            change(Transition.TRANSITION_CONFIGURE)]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("csk_ros"), "config", "segment.yaml")
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters (YAML)"),
        DeclareLaunchArgument("model_dir", default_value="",
                              description="model bundle directory; empty = the params file's model_dir"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("eo_topic", default_value="eo/image", description="EO (colour) image topic"),
        DeclareLaunchArgument("ir_topic", default_value="ir/image", description="IR (thermal) image topic"),
        DeclareLaunchArgument("depth_topic", default_value="depth/image",
                              description="depth image registered to the IR camera (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("ir_camera_info_topic", default_value="ir/camera_info",
                              description="the IR camera's camera_info"),
        DeclareLaunchArgument("publish_points", default_value="",
                              description="true | false: publish ~/points; empty = the params file's value"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag playback)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="true: a managed lifecycle node that waits for configure/activate"),
        DeclareLaunchArgument("autostart", default_value="false",
                              description="with lifecycle:=true, configure and activate the node at once"),
        DeclareLaunchArgument("dds_profile", default_value="auto",
                              description="Fast DDS profile for the processes started from here: auto (yours if "
                                          "set, else the shipped large-frame profile) | none | FILE"),
    ]
    common = dict(
        package="csk_ros",
        executable="segment_node",
        name="segment_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        remappings=[("eo/image", LaunchConfiguration("eo_topic")), ("ir/image", LaunchConfiguration("ir_topic")),
                    ("depth/image", LaunchConfiguration("depth_topic")),
                    ("ir/camera_info", LaunchConfiguration("ir_camera_info_topic"))],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )
    sim_time = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}

    def node(context):
        # model_dir overrides the params file only when given, so an empty argument never blanks a
        # model_dir set in a custom params file. Decided here in Python: a plain string test that
        # works on every distro (NotEqualsSubstitution does not exist in Humble) and cannot turn a
        # path holding a quote into a syntax error (PythonExpression could).
        model_dir = LaunchConfiguration("model_dir").perform(context)
        parameters = [LaunchConfiguration("params_file"), sim_time] + ([{"model_dir": model_dir}] if model_dir else [])
        points = LaunchConfiguration("publish_points").perform(context).strip().lower()
        if points not in ("", "true", "false"):
            raise ValueError(f"publish_points:={points!r}: expected true or false")
        if points:
            parameters.append({"publish_points": points == "true"})
        lifecycle, autostart = (flag(context, name) for name in ("lifecycle", "autostart"))
        if not lifecycle:
            if autostart:
                raise ValueError("autostart:=true needs lifecycle:=true (a plain node starts by itself)")
            return [Node(**common, parameters=parameters)]
        managed = LifecycleNode(**common, parameters=parameters + [{"lifecycle": True}])
        return [managed] + (autostart_actions(managed) if autostart else [])

    return LaunchDescription(args + [OpaqueFunction(function=dds_environment), OpaqueFunction(function=node)])
