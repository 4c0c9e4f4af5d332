"""The public benchmarks' layouts: cityscapes (label ids -> 19 train ids) and ade20k (150
classes, label 0 ignored), read pixel for pixel from trees the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segkit import DataError
from segkit.cli import main
from segkit.data import build_dataset

from .dataset_fixtures import (
    error_lines,
    tree_state,
    write_ade20k,
    write_cityscapes,
)
from .tiny import write_tiny_config_on


def read_all(registry, name: str, split: str, root: Path) -> dict:
    dataset = build_dataset(name, split, {"root": str(root)}, registry)
    return dataset, {dataset[i].name: dataset[i].mask for i in range(len(dataset))}


def train_one_epoch(tmp_path: Path, dataset: str) -> dict:
    """`segkit run` of the tiny model on ``dataset`` (its [data.dataset] body); the summary."""
    config = write_tiny_config_on(tmp_path, dataset)
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir)]) == 0
    return json.loads((run_dir / "summary.json").read_text())


def refused_run(tmp_path: Path, dataset: str, capsys) -> str:
    """`segkit run` on a dataset it must refuse: exit 2, one line, no run folder, no file
    of the tree changed."""
    before = tree_state(tmp_path)
    config = write_tiny_config_on(tmp_path, dataset)
    run_dir = tmp_path / "run"
    assert main(["run", str(config), "--run-dir", str(run_dir)]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not run_dir.exists()
    config.unlink()
    assert tree_state(tmp_path) == before
    return lines[0]


# -- cityscapes ----------------------------------------------------------------------


def test_cityscapes_label_ids_become_the_19_train_ids(tmp_path, registry):
    expected = write_cityscapes(tmp_path, train_ids_in_val=False)
    dataset, masks = read_all(registry, "cityscapes", "train", tmp_path)
    assert dataset.class_names[:3] == ["road", "sidewalk", "building"]
    assert dataset.class_names[-1] == "bicycle" and dataset.num_classes == 19
    assert dataset.palette[0].tolist() == [128, 64, 128]  # road
    assert dataset.palette[13].tolist() == [0, 0, 142]  # car
    assert dataset.splits == ("train", "val")
    assert len(masks) == 3
    for name, mask in masks.items():
        np.testing.assert_array_equal(mask, expected[name], err_msg=name)
    # the quirks: ego vehicle (1), caravan (29) and the license plate (-1, stored as 255)
    # are all ignored; car (26) is 13, bicycle (33) 18
    last = masks["aachen_000002_000019_leftImg8bit"]
    assert last[21, 5] == 255 and last[10, 24] == 255 and last[11, 7] == 255
    assert last[9, 5] == 13 and last[15, 25] == 18


def test_cityscapes_reads_label_train_ids_where_they_were_made(tmp_path, registry):
    expected = write_cityscapes(tmp_path, train_ids_in_val=True)
    _, masks = read_all(registry, "cityscapes", "val", tmp_path)
    for name, mask in masks.items():  # the fixture's train ids differ from the ids' mapping
        np.testing.assert_array_equal(mask, expected[name], err_msg=name)


def test_cityscapes_refuses_unknown_ids_and_half_made_train_ids(tmp_path, registry):
    write_cityscapes(tmp_path)
    label = sorted((tmp_path / "gtFine" / "train").rglob("*_labelIds.png"))[0]
    bad = np.array(Image.open(label))
    bad[0, 0] = 40
    Image.fromarray(bad).save(label)
    dataset = build_dataset("cityscapes", "train", {"root": str(tmp_path)}, registry)
    with pytest.raises(DataError, match=r"holds the value 40, which the Cityscapes label ids"):
        dataset[0]
    next((tmp_path / "gtFine" / "val").rglob("*_labelTrainIds.png")).unlink()
    with pytest.raises(DataError, match=r"\*_labelTrainIds.png for 2 of its 3 images"):
        build_dataset("cityscapes", "val", {"root": str(tmp_path)}, registry)


def test_a_cityscapes_tree_without_gtfine_is_refused_before_the_run(tmp_path, capsys):
    write_cityscapes(tmp_path / "cityscapes")
    for path in sorted((tmp_path / "cityscapes" / "gtFine").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / "cityscapes" / "gtFine").rmdir()
    line = refused_run(tmp_path, f'name = "cityscapes"\nroot = "{tmp_path / "cityscapes"}"', capsys)
    assert "has no gtFine/ folder" in line and "gtFine_trainvaltest.zip" in line


def test_cityscapes_trains_one_epoch(tmp_path):
    write_cityscapes(tmp_path / "cityscapes", images=2)
    summary = train_one_epoch(tmp_path, f'name = "cityscapes"\nroot = "{tmp_path / "cityscapes"}"')
    assert len(summary["per_class_iou"]) == 19 and 0 <= summary["miou"] <= 1


# -- ade20k --------------------------------------------------------------------------


def test_ade20k_ignores_label_zero_and_shifts_the_others(tmp_path, registry):
    expected = write_ade20k(tmp_path)
    for split in ("train", "val"):
        for root in (tmp_path, tmp_path / "ADEChallengeData2016"):
            dataset, masks = read_all(registry, "ade20k", split, root)
            assert len(masks) == 3
            for name, mask in masks.items():
                np.testing.assert_array_equal(mask, expected[name], err_msg=name)
    assert dataset.num_classes == 150 and len(set(dataset.class_names)) == 150
    names = dataset.class_names
    assert (names[0], names[12], names[20], names[149]) == ("wall", "person", "car", "flag")
    assert len({tuple(c) for c in dataset.palette[:150].tolist()}) == 150  # all distinct
    mask = masks["ADE_valid_00000001"]
    assert mask[20, 2] == 255 and mask[0, 0] == 0 and mask[10, 2] == 12 and mask[20, 20] == 149


def test_ade20k_refuses_labels_above_150_and_jpeg_annotations(tmp_path, registry):
    write_ade20k(tmp_path)
    annotations = tmp_path / "ADEChallengeData2016" / "annotations" / "training"
    first = sorted(annotations.glob("*.png"))[0]
    Image.fromarray(np.full((24, 32), 151, np.uint8)).save(first)
    dataset = build_dataset("ade20k", "train", {"root": str(tmp_path)}, registry)
    with pytest.raises(DataError, match=r"value 151, which ADE20K's labels \(0\.\.150\)"):
        dataset[0]
    Image.open(first).convert("RGB").save(first.with_suffix(".jpg"))
    first.unlink()
    with pytest.raises(DataError, match=r"1 masks are JPEG files .* masks must be lossless PNGs"):
        build_dataset("ade20k", "train", {"root": str(tmp_path)}, registry)
    with pytest.raises(DataError, match=r"has no ADEChallengeData2016/"):
        build_dataset("ade20k", "train", {"root": str(tmp_path / "elsewhere")}, registry)


def test_ade20k_trains_one_epoch(tmp_path):
    write_ade20k(tmp_path / "ade", images=2)
    summary = train_one_epoch(tmp_path, f'name = "ade20k"\nroot = "{tmp_path / "ade"}"')
    assert len(summary["per_class_iou"]) == 150


def test_a_folder_pointed_at_another_layout_names_it(tmp_path, registry):
    write_cityscapes(tmp_path)
    with pytest.raises(DataError, match=r"looks like a 'cityscapes' dataset.*--dataset cityscapes"):
        build_dataset("folder", "train", {"root": str(tmp_path)}, registry)
