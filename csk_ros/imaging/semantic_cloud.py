"""Semantic point cloud: a depth image registered to the IR camera, back-projected
through the IR intrinsics at the mask's resolution, with each point's class and
confidence (pure numpy, no ROS; the message, reused frame after frame, is `CloudMessage`).

Why organized and at mask resolution: Nav2's semantic segmentation layer walks
the mask and the cloud with one pixel index and drops a frame whose cloud is
not exactly width x height of the mask. Points whose depth is invalid (0, NaN,
out of [min_m, max_m]) are NaN, as REP-118 clouds do, so that index stays
aligned; consumers skip non-finite points.

Point layout (16 bytes, little- or host-endian as flagged): x, y, z float32
metres in the IR optical frame, class uint8 (the mask value), confidence uint8
(0-255, the same scale as ~/confidence: one byte keeps 640x480 at 4.9 MB and
needs no conversion), 2 bytes padding.
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import cv2
import numpy as np

from csk_ros.imaging.frames import resize_nearest

POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "class", "confidence"],
                        "formats": ["<f4", "<f4", "<f4", "u1", "u1"],
                        "offsets": [0, 4, 8, 12, 13], "itemsize": 16})
DEPTH_ENCODINGS = {"16UC1": 0.001, "mono16": 0.001, "32FC1": 1.0}  # encoding -> metres per unit


class DepthError(ValueError):
    """A depth frame or camera_info the cloud cannot use; `reason` is the diagnostics counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image `width` x `height` (from CameraInfo.k)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_camera_info(cls, msg) -> Intrinsics:
        """From P when it is set, else K. depth_image_proc registers depth with P (image_geometry's fx/cx
        are P's), which is the camera of the RECTIFIED image; K describes the raw, distorted one. They are
        equal for an undistorted camera; with distortion, feed the node rectified IR (image_proc)."""
        p = [float(v) for v in getattr(msg, "p", ())]
        k = [float(v) for v in msg.k]
        width, height = int(msg.width), int(msg.height)
        if len(p) == 12 and np.all(np.isfinite(p)) and p[0] > 0 and p[5] > 0:
            fx, fy, cx, cy = p[0], p[5], p[2], p[6]
        elif len(k) == 9 and np.all(np.isfinite(k)) and k[0] > 0 and k[4] > 0:
            fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        else:
            raise DepthError("bad_camera_info", f"camera_info needs a positive fx, fy (in P or K), got p={p} "
                                                f"k={k}")
        if width <= 0 or height <= 0:
            raise DepthError("bad_camera_info", f"camera_info has no image size ({width}x{height})")
        return cls(fx, fy, cx, cy, width, height)

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera seen at another resolution. Pixel centres map as
        (u + 0.5) * s - 0.5, which keeps the optical axis where it was."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                          width, height)


def depth_in_metres(depth: np.ndarray, encoding: str, out: np.ndarray | None = None) -> np.ndarray:
    """float32 metres from a decoded 16UC1 (millimetres) or 32FC1 (metres) depth array (into `out` if given)."""
    scale = DEPTH_ENCODINGS.get(encoding)
    if scale is None or depth.ndim != 2:
        raise DepthError("depth_encoding", f"depth must be 16UC1 (mm) or 32FC1 (m), got {encoding} "
                                           f"with shape {depth.shape}")
    if out is None or out.shape != depth.shape:
        out = np.empty(depth.shape, np.float32)
    return np.multiply(depth, np.float32(scale), out=out, casting="unsafe")


class SemanticCloudBuilder:
    """Turns (depth in metres, mask, confidence) into the packed point array.

    The per-pixel rays of one (intrinsics, size) are computed once and reused:
    per frame the work is three multiplies, a validity mask and a packed copy.
    """

    def __init__(self, min_m: float = 0.05, max_m: float = 30.0):
        if not 0.0 <= min_m < max_m:
            raise ValueError(f"depth range must satisfy 0 <= min < max, got [{min_m}, {max_m}]")
        self.min_m, self.max_m = float(min_m), float(max_m)
        self._rays_key = None
        self._rays: tuple[np.ndarray, np.ndarray] | None = None
        self._scratch: dict[str, np.ndarray] = {}

    def scratch(self, name: str, shape: tuple[int, int], dtype) -> np.ndarray:
        """A per-size working array kept between frames: at 30 Hz, fresh 1.2 MB temporaries cost more in
        page faults than the arithmetic done in them."""
        array_ = self._scratch.get(name)
        if array_ is None or array_.shape != shape or array_.dtype != dtype:
            array_ = self._scratch[name] = np.empty(shape, dtype)
        return array_

    def rays(self, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """x/z and y/z of every pixel centre (float32, HxW)."""
        if self._rays_key != intr:
            u = (np.arange(intr.width, dtype=np.float64) - intr.cx) / intr.fx
            v = (np.arange(intr.height, dtype=np.float64) - intr.cy) / intr.fy
            self._rays = (np.broadcast_to(u.astype(np.float32), (intr.height, intr.width)).copy(),
                          np.broadcast_to(v.astype(np.float32)[:, None], (intr.height, intr.width)).copy())
            self._rays_key = intr
        return self._rays

    def build(self, depth_m: np.ndarray, camera: Intrinsics, mask: np.ndarray, confidence: np.ndarray,
              out: np.ndarray | None = None) -> np.ndarray:
        """Packed HxW POINT_DTYPE array at the mask's size (written into `out` when given, e.g. a message's
        buffer). `depth_m` must be registered to the camera that `camera` describes (same size); it is
        resized to the mask with nearest neighbour, never interpolated across depth edges."""
        if depth_m.shape != (camera.height, camera.width):
            raise DepthError("depth_size_mismatch", f"depth is {depth_m.shape[1]}x{depth_m.shape[0]} but the IR "
                                                    f"camera_info is {camera.width}x{camera.height}: register depth "
                                                    "to the IR camera (depth_image_proc/register)")
        height, width = mask.shape
        if confidence.shape != mask.shape:
            raise ValueError(f"confidence {confidence.shape} and mask {mask.shape} differ")
        # nearest = the source pixel holding each mask pixel's centre, the convention of Intrinsics.scaled
        depth_m = resize_nearest(depth_m, mask.shape)
        intr = camera if (camera.width, camera.height) == (width, height) else camera.scaled(width, height)
        ray_x, ray_y = self.rays(intr)
        shape = (height, width)
        z, x, y = (self.scratch(name, shape, np.float32) for name in ("z", "x", "y"))
        invalid, above = self.scratch("invalid", shape, np.bool_), self.scratch("above", shape, np.bool_)
        with np.errstate(invalid="ignore"):
            np.less(depth_m, np.float32(self.min_m), out=invalid)
            np.greater(depth_m, np.float32(self.max_m), out=above)
        invalid |= above
        invalid |= np.isnan(depth_m, out=above)
        invalid |= np.less_equal(depth_m, 0.0, out=above)  # 0 = no return, whatever depth_min_m says
        np.copyto(z, depth_m, casting="same_kind")
        np.copyto(z, np.float32(np.nan), where=invalid)
        np.multiply(ray_x, z, out=x)
        np.multiply(ray_y, z, out=y)
        # class and confidence bytes travel as the 4th float32 of each point (offsets 12, 13; 14-15 zero)
        zeros = self.scratch("zeros", shape, np.uint8)
        zeros[...] = 0
        tags = cv2.merge([np.ascontiguousarray(mask), np.ascontiguousarray(confidence), zeros, zeros],
                         dst=self.scratch("tags", shape + (4,), np.uint8))
        if out is None:
            out = np.empty((height, width), POINT_DTYPE)
        elif out.shape != (height, width) or out.dtype != POINT_DTYPE:
            raise ValueError(f"out must be {height}x{width} {POINT_DTYPE}, got {out.shape} {out.dtype}")
        # One interleaving pass (OpenCV's SIMD merge) instead of five strided field writes: the cloud is
        # 16 bytes a pixel, and at 640x480 the strided writes cost more than everything else.
        cv2.merge([x, y, z, tags.view(np.float32)[:, :, 0]], dst=out.view(np.float32).reshape(height, width, 4))
        return out


class CloudMessage:
    """One sensor_msgs/PointCloud2 reused frame after frame, its data buffer written in place by
    SemanticCloudBuilder.build(out=...). Safe because rclpy copies a message inside publish(): fill,
    publish, then fill again (one thread). Saves allocating and page-faulting 4.9 MB per frame at 640x480."""

    def __init__(self):
        self.msg = None
        self._view: np.ndarray | None = None

    def points_buffer(self, height: int, width: int) -> np.ndarray:
        """The HxW POINT_DTYPE view of the message's data to build into."""
        if self.msg is None or (self.msg.height, self.msg.width) != (height, width):
            self._view = None  # release the buffer export before the array is replaced
            self.msg = _empty_cloud(height, width)
            self._view = np.frombuffer(self.msg.data, np.uint8).view(POINT_DTYPE).reshape(height, width)
        return self._view

    def message(self, header):
        self.msg.header = header
        return self.msg


def _empty_cloud(height: int, width: int):
    from sensor_msgs.msg import PointCloud2, PointField  # lazy: this module must import without ROS

    kinds = {"<f4": PointField.FLOAT32, "|u1": PointField.UINT8}
    msg = PointCloud2()
    msg.height, msg.width = height, width
    msg.fields = [PointField(name=name, offset=int(offset), datatype=kinds[dtype.str], count=1)
                  for name, (dtype, offset) in sorted(POINT_DTYPE.fields.items(), key=lambda f: f[1][1])]
    msg.is_bigendian = False  # POINT_DTYPE is little-endian on every host
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = msg.point_step * width
    msg.is_dense = False
    msg.data = array.array("B", bytes(msg.row_step * height))
    return msg

