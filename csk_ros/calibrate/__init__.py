"""EO->IR registration for the segment node: fit the `eo_to_ir_homography` parameter from a calibration
board, hand-picked points or the two camera calibrations, and check it on recorded pairs.

`python -m csk_ros.calibrate {board,points,cameras,check} --help`; procedure in docs/registration.md.
"""
