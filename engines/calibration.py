"""Images for INT8 calibration and validation of a bundle's graphs, prepared
exactly as the node prepares camera frames (uint8 EO RGB and IR, bilinear
resize to the bundle's input size: csk_ros.imaging.frames.resize_linear), and the
mIoU of an ONNX graph over them (the quantisation gate's measure).

Calibration reads the training split (minus the held-out share when the
model was selected on `holdout`); validation reads the model-selection split
(`train.eval_split`), never a test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from csk_ros.bundle import GRAPH_INPUTS
from csk_ros.imaging.frames import resize_linear, resize_nearest
import torch

from training.data import build_dataset
from training.metrics import confusion_matrix, iou_per_class, mean_iou


@dataclass
class ImageSet:
    """uint8 frames at the bundle size: eo [N, H, W, 3], ir [N, H, W], label [N, H, W] (int64)."""

    split: str
    indices: list[int]
    eo: np.ndarray
    ir: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def feeds(self, graph: str, i: int) -> dict[str, np.ndarray]:
        images = {"eo": self.eo[i:i + 1], "ir": self.ir[i:i + 1]}
        return {name: images[name] for name in GRAPH_INPUTS[graph]}


def spread(indices: list[int], count: int | None) -> list[int]:
    """`count` indices spread evenly over `indices` (all of them when count is None or larger)."""
    if count is None or count >= len(indices):
        return list(indices)
    if count <= 0:
        raise ValueError(f"need at least one image, got {count}")
    picks = np.linspace(0, len(indices) - 1, count).round().astype(int)
    return [indices[i] for i in picks]


def load_images(data_cfg: dict, split: str, height: int, width: int, count: int | None,
                indices: list[int] | None = None) -> ImageSet:
    """`count` frames of `split` (evenly spread; unaugmented) at height x width, as the node feeds them."""
    dataset = build_dataset(data_cfg, split, train=False)
    chosen = spread(list(range(len(dataset))) if indices is None else indices, count)
    if not chosen:
        raise ValueError(f"split {split!r} of {data_cfg.get('name')!r} has no images")
    eo, ir, label = [], [], []
    for index in chosen:
        s = dataset.numpy_sample(index)
        eo.append(resize_linear(np.ascontiguousarray(s["eo"], np.uint8), (height, width)))
        ir.append(resize_linear(np.ascontiguousarray(s["ir"], np.uint8), (height, width)))
        lab = np.asarray(s["label"])
        if lab.shape != (height, width):
            # nearest keeps class ids (255 = ignore stays 255)
            lab = resize_nearest(lab.astype(np.uint8), (height, width)).astype(np.int64)
        label.append(lab.astype(np.int64))
    return ImageSet(split, chosen, np.stack(eo), np.stack(ir), np.stack(label))


class FeedReader:
    """onnxruntime.quantization CalibrationDataReader over an ImageSet (one frame per run).

    Supports `set_range`, so ORT's strided calibration (CalibStridedMinMax)
    collects a few frames at a time and memory stays bounded at 480x640."""

    def __init__(self, images: ImageSet, graph: str):
        self.images, self.graph = images, graph
        self.start, self.end = 0, len(images)
        self.position = 0

    def __len__(self) -> int:
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end = start_index, min(end_index, len(self.images))
        self.position = self.start

    def get_next(self):
        if self.position >= self.end:
            return None
        self.position += 1
        return self.images.feeds(self.graph, self.position - 1)

    def rewind(self) -> None:
        self.position = self.start


def session_miou(run, graph: str, images: ImageSet, num_classes: int) -> dict:
    """mIoU of `run(feeds) -> (mask, confidence)` over `images`; also returns the masks for agreement checks."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    masks = []
    for i in range(len(images)):
        mask = run(images.feeds(graph, i))[0]
        masks.append(mask[0])
        cm += confusion_matrix(torch.from_numpy(mask[0]), torch.from_numpy(images.label[i]), num_classes).numpy()
    # the training metric (MFNet protocol: all classes incl. unlabeled, absent classes skipped)
    return {"miou": mean_iou(iou_per_class(cm)), "confusion": cm, "masks": np.stack(masks)}


def ort_runner(path, threads: int = 0):
    """A CPU ONNX Runtime session as `run(feeds) -> outputs`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)
