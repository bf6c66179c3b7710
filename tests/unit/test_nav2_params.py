"""`python -m csk_ros.nav2_params`: a semantic_segmentation_layer configuration that names every class
of the bundle exactly as ~/label_info does, on this node's topics."""

import subprocess
import sys

import pytest
import yaml

from csk_ros.tools.nav2_params import class_type_name, layer_params, main


def source_block(params, source="thermal_segmentation"):
    return params[source]


def test_every_class_gets_exactly_one_class_type_with_its_exact_name():
    names = ("unlabeled", "car", "person", "color cone", "2wheeler", "class_types")
    params = layer_params(names, costs={"person": 254, "car": 100})
    block = source_block(params)
    listed = [c for t in block["class_types"] for c in block[t]["classes"]]
    assert sorted(listed) == sorted(names)
    assert len(set(block["class_types"])) == len(names)
    assert isinstance(block["class_types"], list)  # a class named like a source key does not overwrite it
    assert params["use_approximate_time_sync"] is False  # the node's stamps are identical: match exactly
    assert all(t.replace("_", "").isalnum() and not t[0].isdigit() for t in block["class_types"])
    person = next(block[t] for t in block["class_types"] if block[t]["classes"] == ["person"])
    assert (person["base_cost"], person["max_cost"], person["dominant_priority"]) == (254, 254, True)
    unlabeled = block["unlabeled"]
    assert (unlabeled["base_cost"], unlabeled["dominant_priority"]) == (0, False)


def test_topics_follow_the_node_name():
    params = layer_params(["a"], node="robot/segment_node")
    block = source_block(params)
    assert params["observation_sources"] == "thermal_segmentation"
    assert (block["segmentation_topic"], block["confidence_topic"], block["labels_topic"], block["pointcloud_topic"]) \
        == ("/robot/segment_node/mask", "/robot/segment_node/confidence", "/robot/segment_node/label_info",
            "/robot/segment_node/points")


def test_duplicate_class_names_are_refused():
    with pytest.raises(ValueError, match="more than once"):
        layer_params(["car", "person", "car"])


def test_class_type_names_are_unique_and_parameter_safe():
    taken = set()
    assert [class_type_name(n, taken) for n in ("car", "car", "a-b", "", "9x")] == \
        ["car", "car_2", "a_b", "class", "class_9x"]


def test_cli_prints_loadable_yaml_for_a_bundle(tiny_bundle, capsys):
    assert main([str(tiny_bundle), "--cost", "person=254", "--costmap", "global_costmap"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#")
    doc = yaml.safe_load(out)
    layer = doc["global_costmap"]["global_costmap"]["ros__parameters"]["semantic_segmentation_layer"]
    assert layer["plugin"] == "semantic_segmentation_layer::SemanticSegmentationLayer"
    from csk_ros.bundle import load_manifest

    names = load_manifest(tiny_bundle).class_names
    block = layer["thermal_segmentation"]
    assert sorted(c for t in block["class_types"] for c in block[t]["classes"]) == sorted(names)


@pytest.mark.parametrize("args, message", [(["--cost", "tree=5"], "NAME=COST"), (["--cost", "person=300"], "0..254")])
def test_cli_refuses_unknown_classes_and_bad_costs(tiny_bundle, args, message):
    result = subprocess.run([sys.executable, "-m", "csk_ros.nav2_params", str(tiny_bundle), *args],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and result.stdout == ""
