"""The accuracy measures of ``benchmarks/crf.py`` (``crf_data.py``) against plain reference
versions."""

from __future__ import annotations

import importlib
import os
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def crf_benchmark():
    environment = dict(os.environ)  # the benchmark sets OMP_WAIT_POLICY for its own runs
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("crf_data")
    finally:
        sys.path.remove(str(BENCHMARKS))
        os.environ.clear()
        os.environ.update(environment)


def flood_fill_sizes(labels: np.ndarray) -> np.ndarray:
    """Region sizes by breadth-first search over the 8 neighbours of each pixel."""
    height, width = labels.shape
    sizes = np.zeros(labels.shape, dtype=np.int64)
    for seed in np.ndindex(height, width):
        if sizes[seed]:
            continue
        region, queue, seen = [], deque([seed]), {seed}
        while queue:
            y, x = queue.popleft()
            region.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    near = (y + dy, x + dx)
                    if (
                        0 <= near[0] < height
                        and 0 <= near[1] < width
                        and near not in seen
                        and labels[near] == labels[y, x]
                    ):
                        seen.add(near)
                        queue.append(near)
        for pixel in region:
            sizes[pixel] = len(region)
    return sizes


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_region_sizes_match_a_flood_fill(crf_benchmark, classes: int) -> None:
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, (23, 31))
    np.testing.assert_array_equal(crf_benchmark.region_sizes(labels), flood_fill_sizes(labels))


def test_regions_join_diagonally_and_around_bends(crf_benchmark) -> None:
    labels = np.array(
        [
            [1, 0, 0, 0, 1],
            [0, 1, 0, 1, 0],
            [0, 0, 0, 0, 0],
            [1, 1, 0, 1, 1],
            [0, 1, 1, 1, 0],
        ]
    )
    sizes = crf_benchmark.region_sizes(labels)
    assert sizes[0, 0] == sizes[1, 1] == 2  # a diagonal step joins
    assert sizes[0, 4] == sizes[1, 3] == 2
    assert sizes[3, 0] == sizes[3, 4] == 7  # a U joins its two arms through the bottom
    assert sizes[2, 2] == 12


def test_specks_are_ignored_in_the_mean_iou(crf_benchmark) -> None:
    labels = torch.zeros(1, 40, 50, dtype=torch.long)
    labels[0, 10:30, 10:30] = 1
    labels[0, 2, 45] = 1  # a one-pixel speck of class 1 in the background
    speckless = crf_benchmark.without_specks(labels, fraction=0.01)  # below 20 pixels
    assert speckless[0, 2, 45] == -1
    assert (speckless >= 0).sum() == labels.numel() - 1
    # a prediction without the speck: perfect once it is ignored, not before
    probs = torch.nn.functional.one_hot(speckless.clamp_min(0), 2).permute(0, 3, 1, 2).float()
    assert crf_benchmark.mean_iou(probs, speckless) == 1.0
    assert crf_benchmark.mean_iou(probs, labels) == pytest.approx((1599 / 1600 + 400 / 401) / 2)


def test_human_marks_take_the_outputs_colour_order(crf_benchmark, tmp_path, monkeypatch) -> None:
    from PIL import Image

    green, red = (0, 128, 0), (128, 0, 0)  # green sorts first: it is class 0
    out = np.zeros((4, 6, 3), np.uint8)
    out[:, :3], out[:, 3:] = red, green
    marks = out.copy()
    marks[:, 2:4] = 0  # unmarked
    marks[0, 0] = green  # a mark that disagrees with the output
    Image.fromarray(np.zeros_like(out)).save(tmp_path / "im1.png")
    Image.fromarray(out).save(tmp_path / "out1.png")
    Image.fromarray(marks).save(tmp_path / "anno1.png")
    monkeypatch.setattr(crf_benchmark, "EXAMPLES", tmp_path)
    labels = crf_benchmark.annotation_labels(2, 4, 6)
    expected = np.array([[0, 1, -1, -1, 0, 0]] + [[1, 1, -1, -1, 0, 0]] * 3)
    assert labels.shape == (2, 4, 6)
    np.testing.assert_array_equal(labels[0].numpy(), expected)
    np.testing.assert_array_equal(labels[1].numpy(), expected)  # the photographs cycle
