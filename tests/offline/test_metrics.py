"""IoU math on hand-made confusion matrices (MFNet protocol)."""

import math

import numpy as np
import pytest
import torch

from training.metrics import confusion_matrix, iou_per_class, summarize


def test_confusion_matrix_counts_and_skips_ignore():
    label = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(pred, label, 3).numpy()
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(cm, expected)


def test_iou_by_hand():
    cm = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    # class0: tp1 / (gt2 + pred2 - 1) = 1/3; class1: 2/(2+3-2)=2/3; class2: 0/(1+0-0)=0
    np.testing.assert_allclose(iou_per_class(cm), [1 / 3, 2 / 3, 0.0])
    m = summarize(cm, ("unlabeled", "car", "person"))
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert m["miou_no_unlabeled"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["pixel_acc"] == pytest.approx(3 / 5)
    assert m["per_class_iou"]["car"] == pytest.approx(2 / 3)
    assert "including unlabeled" in m["miou_protocol"]


def test_absent_class_is_skipped_not_counted_as_zero():
    cm = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]])
    iou = iou_per_class(cm)
    assert math.isnan(iou[2])
    m = summarize(cm, ("a", "b", "c"))
    assert m["miou"] == pytest.approx(1.0)
    assert m["per_class_iou"]["c"] is None


def test_perfect_and_all_wrong():
    assert summarize(np.eye(4, dtype=int) * 7, "abcd")["miou"] == pytest.approx(1.0)
    wrong = np.array([[0, 3], [3, 0]])
    assert summarize(wrong, "ab")["miou"] == 0.0
