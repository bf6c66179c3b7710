"""Drives a segment_node process from Python over real ROS 2 (tests, `make demo`, benchmarks).
Not part of the installed runtime: setup.py installs csk_ros only."""
