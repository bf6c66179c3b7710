"""The segment node and its ROS-side parts, one job a module (issue "The node as one package").

    segment_node.py        SegmentNode: parameters, lifecycle, threads, live changes (the wiring) and main()
    inputs.py              subscriptions and the executor thread's callbacks (decode, feed the core, hand over IR)
    worker.py              the inference thread: freshest IR frame, its EO partner, the model, the publishes
    outputs.py             publishers: mask, confidence, renderings, ~/mode, ~/classes, ~/label_info, ~/points
    diagnostics.py         /diagnostics from a timer, and at once on an alarm change
    parameters.py          declaring the parameters and checking a live change by the start-up rules
    model_swap.py          ~/reload_model: a checked new model swapped in between two frames
    service_host.py        a service on its own thread, so a slow reload never stalls the cameras
    points_output.py       ~/points: depth paired with the mask's IR frame, one semantic cloud a mask
    registration_watch.py  the background EO-to-IR registration check

The per-frame rules are not here: they live in the ROS-free csk_ros/pipeline.py and csk_ros/logic/, which the
bag tool (csk_ros/bag/) drives too. SegmentNode is assembled from mixins (inputs, worker, outputs,
diagnostics, model swap) that share its state under one lock; points_output, registration_watch and
service_host are objects it owns. This package's __init__ imports nothing, so the ROS-free parts
(points_output, registration_watch) load without rclpy. `python -m csk_ros.segment_node` and the
`segment_node` executable run `csk_ros.node.segment_node.main`.
"""
