"""Fixtures of the real-ROS tests: `node` starts a segment node on the FAST parameters with a Driver."""

import pytest

from harness.stream_client import Driver, start_node, stop_node
from tests.support.node_harness import FAST


@pytest.fixture
def node(tiny_bundle, ros_env):
    started = []

    def start(params=None, sim_time=False, bundle=None, wait=True):
        """wait=False: return before the node subscribes (a lifecycle node waiting for configure)."""
        proc = start_node(bundle or tiny_bundle, ros_env, dict(FAST, **(params or {})))
        driver = Driver(sim_time=sim_time)
        started.append((proc, driver))
        if wait:
            assert driver.wait_for_subscribers(40), stop_node(proc)
        return proc, driver

    yield start
    for proc, driver in started:
        driver.close()
        log = stop_node(proc)
        assert "Traceback" not in log, log
