"""Print a Nav2 semantic_segmentation_layer configuration for this node and a model bundle.

    python -m csk_ros.nav2_params BUNDLE [--node /segment_node] [--cost person=254 --cost car=254 ...]

(csk_ros.nav2_params is an alias of this module, csk_ros/tools/nav2_params.py.)

The layer drops every class of LabelInfo that its parameters do not name (and logs a critical error
for it), so the snippet gives each bundle class its own class type, with the class name exactly as the
node publishes it in ~/label_info. Costs are yours to set: --cost NAME=0..254 per class, --default-cost
for the rest; a class at 253 or more is lethal and takes priority over the others on a tile.
"""

from __future__ import annotations

import argparse
import re
import sys

import yaml

from csk_ros.bundle import BundleError, load_manifest

LETHAL = 253  # nav2_costmap_2d INSCRIBED_INFLATED_OBSTACLE; 254 = LETHAL_OBSTACLE
SOURCE_KEYS = {"segmentation_topic", "confidence_topic", "labels_topic", "pointcloud_topic",
               "observation_persistence", "expected_update_rate", "visualize_tile_map", "use_cost_selection",
               "max_obstacle_distance", "min_obstacle_distance", "tile_map_decay_time", "class_types"}


def class_type_name(class_name: str, taken: set[str]) -> str:
    """A parameter-safe, unique key for a class's class type (ROS parameter names: [A-Za-z0-9_])."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", class_name).strip("_") or "class"
    if base[0].isdigit() or base in SOURCE_KEYS:  # a key must not shadow one of the source's own parameters
        base = f"class_{base}"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def parse_costs(items, class_names) -> dict[str, int]:
    costs = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or name not in class_names:
            raise ValueError(f"--cost {item!r}: expected NAME=COST with NAME one of {list(class_names)}")
        try:
            cost = int(value)
        except ValueError:
            cost = -1
        if not 0 <= cost <= 254:
            raise ValueError(f"--cost {item!r}: COST must be an integer 0..254")
        costs[name] = cost
    return costs


def layer_params(class_names, node: str = "/segment_node", source: str = "thermal_segmentation",
                 costs: dict[str, int] | None = None, default_cost: int = 0, points_topic: str | None = None,
                 tile_map_decay_time: float = 5.0, max_obstacle_distance: float = 5.0) -> dict:
    """The layer's parameter block (what goes under the costmap's ros__parameters)."""
    costs = costs or {}
    duplicates = sorted({n for n in class_names if list(class_names).count(n) > 1})
    if duplicates:
        raise ValueError(f"class names {duplicates} occur more than once in the bundle: the layer maps names to "
                         "ids, so only one of each would be used; re-export the bundle with unique names")
    node = "/" + node.strip("/")
    taken: set[str] = set()
    types = {}
    for name in class_names:
        cost = costs.get(name, default_cost)
        types[class_type_name(name, taken)] = {
            "classes": [name], "base_cost": cost, "max_cost": cost, "mark_confidence": 0,
            "samples_to_max_cost": 0, "dominant_priority": cost >= LETHAL}
    observation = {
        "segmentation_topic": f"{node}/mask", "confidence_topic": f"{node}/confidence",
        "labels_topic": f"{node}/label_info", "pointcloud_topic": points_topic or f"{node}/points",
        "observation_persistence": 0.0, "expected_update_rate": 0.0, "visualize_tile_map": False,
        "use_cost_selection": True, "max_obstacle_distance": max_obstacle_distance, "min_obstacle_distance": 0.3,
        "tile_map_decay_time": tile_map_decay_time, "class_types": list(types), **types}
    # The node stamps mask, confidence and cloud identically: exact matching (Jazzy's layer defaults to
    # approximate, which could pair a mask with a neighbouring frame's cloud; Humble's is always exact).
    return {"plugin": "semantic_segmentation_layer::SemanticSegmentationLayer", "enabled": True,
            "use_approximate_time_sync": False, "observation_sources": source, source: observation}


def render(bundle_dir: str, args) -> str:
    bundle = load_manifest(bundle_dir, verify_hashes=False)
    costs = parse_costs(args.cost, bundle.class_names)
    params = layer_params(bundle.class_names, args.node, args.source, costs, args.default_cost, args.points_topic)
    doc = {args.costmap: {args.costmap: {"ros__parameters": {"semantic_segmentation_layer": params}}}}
    header = (f"# Nav2 semantic_segmentation_layer for csk_ros ({bundle.root}).\n"
              f"# Classes (mask id: name): {', '.join(f'{i}: {n}' for i, n in enumerate(bundle.class_names))}\n"
              "# Add \"semantic_segmentation_layer\" to this costmap's `plugins` list, run the node with\n"
              "# publish_points:=true (a depth image registered to the IR camera on depth/image), and review the\n"
              "# costs: every class not given with --cost has the default cost, the bundle's own 'unlabeled' class\n"
              "# too (a prediction like the others). Low-confidence pixels (low_confidence_policy: unlabeled)\n"
              "# hold 255, which no class type names: the layer ignores them.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="model bundle directory")
    parser.add_argument("--node", default="/segment_node", help="the node's fully qualified name")
    parser.add_argument("--source", default="thermal_segmentation", help="the layer's observation source name")
    parser.add_argument("--costmap", default="local_costmap", help="the costmap node (local_costmap or "
                        "global_costmap)")
    parser.add_argument("--cost", action="append", metavar="NAME=COST", help="cost 0..254 of a class (repeat)")
    parser.add_argument("--default-cost", type=int, default=0, choices=range(0, 255), metavar="0..254",
                        help="cost of classes not given with --cost (default 0: free)")
    parser.add_argument("--points-topic", help="cloud topic if not the node's ~/points")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.bundle, args))
    except (BundleError, ValueError) as exc:
        print(f"nav2_params: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
