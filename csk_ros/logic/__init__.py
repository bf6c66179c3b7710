"""ROS-free rules of the node: parameters, EO health, pairing, loss, modes, status, labels."""
