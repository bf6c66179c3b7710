"""Recorded data: rosbag2 recordings through the live node's pipeline, without ROS.

`python -m csk_ros.bag segment IN OUT --bundle DIR` runs every IR frame of a
recording through `csk_ros.pipeline.SegmentationPipeline` (the core the live
node drives), on bag time, deterministically, and writes the node's outputs
to a new bag; `from-images` and `to-images` go between bags and MSRS-style
image folders. Bags are read and written with `rosbags` (pure Python: sqlite3
and MCAP storage, no ROS install needed).
"""
