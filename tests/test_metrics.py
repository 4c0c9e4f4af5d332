"""Metrics from the confusion matrix against an independent per-class computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.infer import ConfusionMatrix


def reference_metrics(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict:
    valid = target != 255
    pred, target = pred[valid], target[valid]
    ious, accs, freqs = [], [], []
    for c in range(num_classes):
        tp = np.sum((pred == c) & (target == c))
        fp = np.sum((pred == c) & (target != c))
        fn = np.sum((pred != c) & (target == c))
        if tp + fp + fn > 0:
            ious.append(tp / (tp + fp + fn))
        if tp + fn > 0:
            accs.append(tp / (tp + fn))
            freqs.append(((tp + fn) / target.size, tp / (tp + fp + fn)))
    return {
        "pixel_acc": np.mean(pred == target),
        "mean_class_acc": np.mean(accs),
        "miou": np.mean(ious),
        "fw_iou": sum(f * iou for f, iou in freqs),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_reference(seed):
    rng = np.random.default_rng(seed)
    num_classes = 6
    target = rng.integers(0, num_classes, size=(3, 40, 50))
    target[rng.random(target.shape) < 0.1] = 255
    target[target == 4] = 1  # class 4 absent from the targets
    pred = np.where(
        rng.random(target.shape) < 0.7, target, rng.integers(0, num_classes, target.shape)
    )
    pred[pred == 255] = 0
    pred[pred == 5] = 0  # class 5 never predicted
    matrix = ConfusionMatrix(num_classes)
    for p, t in zip(pred, target, strict=True):  # accumulate over several updates
        matrix.update(torch.from_numpy(p), torch.from_numpy(t))
    result = matrix.compute()
    expected = reference_metrics(pred, target, num_classes)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert len(result["per_class_iou"]) == num_classes


def test_class_absent_everywhere_has_no_iou():
    matrix = ConfusionMatrix(3)
    matrix.update(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
    result = matrix.compute(["bg", "a", "b"])
    assert result["per_class_iou"] == {"bg": 0.5, "a": 0.5, "b": None}
    assert result["miou"] == pytest.approx(0.5)


def test_ignored_pixels_do_not_count():
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([1, 1, 0]), torch.tensor([1, 255, 255]))
    assert matrix.matrix.tolist() == [[0, 0], [0, 1]]
