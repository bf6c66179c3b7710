"""Operator tools: small command-line programs an operator runs beside the node, never the node itself.

    python -m csk_ros.tools.dds_profile   the Fast DDS profile variables for a camera driver's shell
    python -m csk_ros.tools.nav2_params   a Nav2 semantic_segmentation_layer block for a bundle

Both keep their older names (`python -m csk_ros.dds_profile`, `python -m csk_ros.nav2_params`) as thin
aliases at the package top level, for the launch file, scripts and docs that use them. The other tools are
packages of their own: `python -m csk_ros.calibrate`, `python -m csk_ros.bag`.
"""
