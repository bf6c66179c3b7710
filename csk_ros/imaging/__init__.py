"""Images without ROS: sensor_msgs <-> numpy, compressed payloads, thermal scaling, resizing and colours,
the semantic cloud."""
