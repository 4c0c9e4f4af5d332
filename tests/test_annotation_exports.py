"""Annotation-tool exports: coco (COCO, CVAT, Label Studio, Roboflow) and labelme,
rasterised pixel for pixel from files the tests write."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from segkit import DataError
from segkit.cli import main
from segkit.data import build_dataset

from .dataset_fixtures import H, W, error_lines, write_coco, write_labelme
from .test_dataset_layouts import refused_run, train_one_epoch


def masks_of(dataset) -> dict:
    return {dataset[i].name: dataset[i].mask for i in range(len(dataset))}


# -- coco ----------------------------------------------------------------------------


def test_coco_paints_the_larger_first_crowds_as_ignore(tmp_path, registry):
    expected = write_coco(tmp_path)
    params = {"root": str(tmp_path), "val_fraction": 0.25}
    train = build_dataset("coco", "train", params, registry)
    val = build_dataset("coco", "val", params, registry)
    assert train.class_names == ["background", "cat", "dog", "person"]  # ids 3, 7, 12
    got = masks_of(train) | masks_of(val)
    assert sorted(got) == sorted(expected)
    for name, mask in got.items():
        np.testing.assert_array_equal(mask, expected[name], err_msg=name)
    # the rule, one pixel each: the dog (listed first, smaller) lies on the cat; the
    # crowd is ignored; the person inside the crowd is a person
    mask = got["photo_0"]
    assert (mask[5, 5], mask[1, 1], mask[3, 23], mask[6, 25]) == (2, 1, 255, 3)


def test_coco_reads_compressed_rle_and_the_tools_layouts(tmp_path, registry):
    region = np.zeros((H, W), np.uint8, order="F")
    region[10:20, 3:30] = 1
    compressed = coco_mask.encode(np.asfortranarray(region))
    expected = write_coco(tmp_path / "cvat", images=2, file="x.json")
    # CVAT: annotations/instances_default.json beside images/
    cvat = tmp_path / "cvat"
    (cvat / "annotations").mkdir()
    data = json.loads((cvat / "x.json").read_text())
    (cvat / "x.json").unlink()
    data["annotations"].append(
        {
            "id": 99, "image_id": 100, "category_id": 3, "iscrowd": 0,
            "segmentation": {"size": [H, W], "counts": compressed["counts"].decode()},
        }
    )  # fmt: skip
    (cvat / "annotations" / "instances_default.json").write_text(json.dumps(data))
    cvat_set = build_dataset("coco", "all", {"root": str(cvat)}, registry)
    got = masks_of(cvat_set)
    # the RLE (270 pixels) is smaller than the cat (320), so it is painted over it
    want = expected["photo_0"].copy()
    want[region.astype(bool)] = 1
    want[4:8, 4:10] = 2  # the dog (24 pixels) still lies on top
    np.testing.assert_array_equal(got["photo_0"], want)
    np.testing.assert_array_equal(got["photo_1"], expected["photo_1"])

    # Label Studio: result.json whose file names start with images/
    studio = tmp_path / "studio"
    shutil.copytree(cvat / "images", studio / "images")
    data["images"] = [dict(e, file_name=f"images/{e['file_name']}") for e in data["images"]]
    (studio / "result.json").write_text(json.dumps(data))
    assert masks_of(build_dataset("coco", "all", {"root": str(studio)}, registry)).keys() == {
        "photo_0",
        "photo_1",
    }


def test_coco_roboflow_split_folders_and_its_project_category(tmp_path, registry):
    for folder in ("train", "valid"):
        write_coco(tmp_path / folder, images=2, file="_annotations.coco.json")
        path = tmp_path / folder / "_annotations.coco.json"
        data = json.loads(path.read_text())
        for entry in data["images"]:  # Roboflow keeps the images beside the JSON
            shutil.move(tmp_path / folder / "images" / entry["file_name"], tmp_path / folder)
        # Roboflow's category 0: the project, supercategory of the rest, never used
        data["categories"] = [{"id": 0, "name": "pets", "supercategory": "none"}] + [
            dict(c, supercategory="pets") for c in data["categories"]
        ]
        path.write_text(json.dumps(data))
    val = build_dataset("coco", "val", {"root": str(tmp_path)}, registry)
    assert val.class_names == ["background", "cat", "dog", "person"]
    assert val.splits == ("train", "val") and len(val) == 2
    assert len(val.source_files()) == 2 + 2  # both annotation files and the two images
    with pytest.raises(DataError, match=r"no annotation file for split 'test'"):
        build_dataset("coco", "test", {"root": str(tmp_path)}, registry)


BAD_COCO = {
    "not COCO": (
        lambda data: {"shapes": [], "imagePath": "a.png"},
        "is not a COCO annotation file",
    ),
    "a two-point polygon": (
        lambda data: data["annotations"][1].update(segmentation=[[0, 0, 5, 5]]) or data,
        "has a polygon of 2 points; a polygon needs at least 3",
    ),
    "an unknown image id": (
        lambda data: data["annotations"][0].update(image_id=555) or data,
        "names image id 555, which the file's images list does not hold",
    ),
    "a missing image file": (
        lambda data: data["images"][1].update(file_name="gone.png") or data,
        "names the image gone.png, which does not exist",
    ),
    "no categories": (
        lambda data: data.update(categories=[]) or data,
        "has an empty category list",
    ),
}


@pytest.mark.parametrize("case", BAD_COCO, ids=list(BAD_COCO))
def test_bad_coco_files_are_one_line_before_the_run(tmp_path, capsys, case):
    edit, fragment = BAD_COCO[case]
    write_coco(tmp_path / "export", images=3)
    path = tmp_path / "export" / "annotations.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    line = refused_run(tmp_path, f'name = "coco"\nroot = "{tmp_path / "export"}"', capsys)
    assert fragment in line and "coco: " in line


def test_coco_trains_one_epoch(tmp_path):
    write_coco(tmp_path / "export", images=3)
    summary = train_one_epoch(
        tmp_path, f'name = "coco"\nroot = "{tmp_path / "export"}"\nval_fraction = 0.34'
    )
    assert sorted(summary["per_class_iou"]) == ["background", "cat", "dog", "person"]


# -- labelme -------------------------------------------------------------------------


def test_labelme_paints_shapes_in_order_with_paths_of_every_kind(tmp_path, registry):
    expected = write_labelme(tmp_path)
    params = {"root": str(tmp_path / "json"), "val_fraction": 0.25}
    train = build_dataset("labelme", "train", params, registry)
    val = build_dataset("labelme", "val", params, registry)
    assert train.class_names == ["background", "car", "road", "sign"]  # no 'wire': a line
    got = masks_of(train) | masks_of(val)
    assert sorted(got) == sorted(expected)
    for name, mask in got.items():
        want, rim = expected[name]
        np.testing.assert_array_equal(mask[~rim], want[~rim], err_msg=name)
        assert set(np.unique(mask[rim])) <= {0, 3}, name  # the circle's rim: sign or not
    # absolute (shot_0) and Windows-relative (shot_1) image paths were both found
    files = {p.name for p in train.source_files() + val.source_files()}
    assert {"shot_0.png", "shot_1.png", "shot_0.json", "shot_1.json"} <= files


def test_labelme_class_names_fix_the_order_and_name_strangers(tmp_path, registry):
    write_labelme(tmp_path)
    root = str(tmp_path / "json")
    names = ["background", "road", "car", "sign"]
    dataset = build_dataset("labelme", "all", {"root": root, "class_names": names}, registry)
    sample = next(dataset[i] for i in range(len(dataset)) if dataset[i].name == "shot_2")
    assert sample.mask[20, 5] == 1 and sample.mask[6, 5] == 2  # road 1, car 2 now
    with pytest.raises(DataError, match=r"the label sign .* is not in class_names"):
        build_dataset("labelme", "all", {"root": root, "class_names": names[:3]}, registry)


BAD_LABELME = {
    "a two-point polygon": (
        lambda d: d["shapes"].append({"label": "car", "points": [[1, 1], [5, 5]]}) or d,
        "is a polygon of 2 points; it needs at least 3",
    ),
    "a missing image": (lambda d: d.update(imagePath="nowhere.png") or d, "does not exist"),
    "not LabelMe": (lambda d: {"images": []}, "is not a LabelMe file"),
    "an unknown shape": (
        lambda d: (
            d["shapes"].append({"label": "car", "points": [[1, 1]] * 4, "shape_type": "cuboid"})
            or d
        ),
        "is a 'cuboid' shape",
    ),
}


@pytest.mark.parametrize("case", BAD_LABELME, ids=list(BAD_LABELME))
def test_bad_labelme_files_are_one_line_before_the_run(tmp_path, capsys, case):
    edit, fragment = BAD_LABELME[case]
    write_labelme(tmp_path / "lm")
    path = tmp_path / "lm" / "json" / "shot_2.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    line = refused_run(tmp_path, f'name = "labelme"\nroot = "{tmp_path / "lm" / "json"}"', capsys)
    assert fragment in line and "shot_2.json" in line


def test_labelme_lines_are_reported_by_data_check(tmp_path, capsys):
    write_labelme(tmp_path)
    out = tmp_path / "check.png"
    code = main(
        ["data", "check", str(tmp_path / "json"), "--dataset", "labelme", "--out", str(out)]
    )
    assert code == 0 and out.is_file()
    printed = capsys.readouterr().out
    assert "line and point shapes (no area) were not painted" in printed
    assert not error_lines(capsys)


def test_labelme_trains_one_epoch(tmp_path):
    write_labelme(tmp_path / "lm")
    summary = train_one_epoch(
        tmp_path, f'name = "labelme"\nroot = "{tmp_path / "lm" / "json"}"\nval_fraction = 0.25'
    )
    assert sorted(summary["per_class_iou"]) == ["background", "car", "road", "sign"]


def test_coco_without_pycocotools_says_how_to_install_it(tmp_path, registry, monkeypatch):
    write_coco(tmp_path, images=2)
    monkeypatch.setitem(__import__("sys").modules, "pycocotools", None)
    with pytest.raises(DataError, match=r"needs pycocotools; install it with pip install"):
        build_dataset("coco", "all", {"root": str(tmp_path)}, registry)
