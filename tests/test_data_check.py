"""`segkit data check` and the same checks at the start of `segkit run`: masks that
cannot be meant (binary 0/255, a stray label far above the others, one class), what
they print, the picture, and the files they must never write over."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segkit import DataError
from segkit.cli import main
from segkit.data import build_dataset, read_mask
from segkit.data.census import SplitCensus
from segkit.data.check_picture import SOFTWARE
from segkit.data.checks import binary_as_ignore, check_datasets
from segkit.infer.pictures import save_mask_png

from .dataset_fixtures import error_lines, tree_state, write_folder
from .test_dataset_layouts import refused_run, train_one_epoch

FOLDER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "folder.toml"


def check(*args: str) -> int:
    return main(["data", "check", *map(str, args)])


# -- binary masks saved as 0/255 -------------------------------------------------------


def test_data_check_finds_binary_masks_and_names_the_fix(tmp_path, capsys):
    data = write_folder(tmp_path / "data", binary=True)
    before = tree_state(data)
    assert check(data, "--out", tmp_path / "check.png") == 2
    captured = capsys.readouterr()
    problems = [line for line in captured.err.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1, captured.err  # said once, not once per split
    assert "look binary, saved as 0/255" in problems[0]
    assert "set data.dataset.binary = true" in problems[0]
    assert "not usable" in captured.out and (tmp_path / "check.png").is_file()
    assert tree_state(data) == before
    assert check(data, "--set", "binary=true", "--out", tmp_path / "check.png") == 0
    out = capsys.readouterr().out
    assert "background" in out and "foreground" in out and "usable" in out


def test_run_stops_on_binary_masks_and_trains_two_classes_after_the_fix(tmp_path, capsys):
    write_folder(tmp_path / "data", binary=True)
    dataset = f'name = "folder"\nroot = "{tmp_path / "data"}"'
    line = refused_run(tmp_path, dataset, capsys)
    assert "look binary, saved as 0/255" in line and "binary = true" in line
    summary = train_one_epoch(tmp_path, dataset + "\nbinary = true")
    assert sorted(summary["per_class_iou"]) == ["background", "foreground"]


def test_binary_masks_read_as_two_classes_whatever_they_store(tmp_path, registry):
    root = tmp_path / "data"
    write_folder(root, count=3, binary=True)
    masks = sorted((root / "masks").glob("*.png"))
    edge = np.array(Image.open(masks[0]))
    edge[5, 8] = 128  # an anti-aliased edge pixel
    Image.fromarray(edge).save(masks[0])
    Image.fromarray((np.array(Image.open(masks[1])) > 0).astype(np.uint16) * 65535).save(
        masks[1]
    )  # 16-bit 0/65535
    Image.open(masks[2]).convert("RGB").save(masks[2])  # white on black, saved as RGB
    dataset = build_dataset("folder", "all", {"root": str(root), "binary": True}, registry)
    read = {dataset[i].name: dataset[i].mask for i in range(3)}
    for name, mask in read.items():
        assert set(np.unique(mask)) == {0, 1}, name
        assert (mask[6:12, 8:24] == 1).all() and mask[0, 0] == 0
    assert read["i000"][5, 8] == 1


@pytest.mark.parametrize(
    ("pixels", "binary"),
    [
        ({0: 900, 255: 100}, True),  # 0/255
        ({0: 900, 255: 100, **{v: 1 for v in range(100, 120)}}, True),  # anti-aliased
        ({0: 500, 1: 300, 255: 200}, False),  # VOC-like: classes and boundaries
        ({0: 20, 1: 20, 2: 20, 255: 10000}, False),  # scribbles: mostly unlabelled
        ({0: 1000, 255: 0}, False),  # nothing saved as 255
    ],
)
def test_binary_as_ignore_rule(pixels, binary):
    census = SplitCensus("train", 10)
    for value, count in pixels.items():
        census.pixels[value] = count
    assert binary_as_ignore(census) == binary


# -- stray values, one class, mask_values ----------------------------------------------


def test_a_stray_value_far_above_is_refused_with_the_fix(tmp_path, capsys):
    data = write_folder(tmp_path / "data")
    mask_path = sorted((data / "masks").glob("*.png"))[4]
    mask = np.array(Image.open(mask_path))
    mask[0, :6] = 200
    Image.fromarray(mask).save(mask_path)
    line = refused_run(tmp_path, f'name = "folder"\nroot = "{data}"', capsys)
    assert "far above them, 200 in 1 mask (i004.png, 6 pixels)" in line
    assert "201 classes, 196 of which never appear" in line and "mask_values" in line
    assert check(data, "--out", tmp_path / "c.png") == 2
    assert "far above them, 200" in error_lines(capsys)[0]


def test_a_label_with_a_handful_of_pixels_is_a_warning(tmp_path, capsys, registry):
    data = write_folder(tmp_path / "data", count=120, size=(24, 32))
    mask_path = sorted((data / "masks").glob("*.png"))[7]
    mask = np.array(Image.open(mask_path))
    mask[0, 0] = 4
    Image.fromarray(mask).save(mask_path)
    assert (
        check(data, "--set", "val_fraction=0.0", "--split", "all", "--out", tmp_path / "c.png") == 0
    )
    out = capsys.readouterr().out
    assert "label 4 'class4' has 1 pixels in 1 mask of split 'all' (" in out
    assert "i007.png" in out and "a stray value?" in out


def test_masks_of_one_class_make_the_run_meaningless(tmp_path, capsys):
    data = write_folder(tmp_path / "data", count=6)
    for path in (data / "masks").glob("*.png"):
        Image.fromarray(np.zeros((24, 32), np.uint8)).save(path)
    line = refused_run(
        tmp_path, f'name = "folder"\nroot = "{data}"\nclass_names = ["sea", "ship"]', capsys
    )
    assert "hold one class only (label 0 'sea')" in line


def test_mask_values_map_what_the_masks_store(tmp_path, registry):
    data = write_folder(tmp_path / "data", count=3)
    for path in (data / "masks").glob("*.png"):
        stored = (np.array(Image.open(path)).astype(np.int64) * 10).clip(0, 250)
        Image.fromarray(stored.astype(np.uint8)).save(path)
    params = {"root": str(data), "mask_values": {"0": 0, "10": 1, "20": 2, "30": 3, "250": 255}}
    dataset = build_dataset("folder", "all", params, registry)
    assert dataset.num_classes == 4
    read = {dataset[i].name: dataset[i].mask for i in range(3)}
    assert set(np.unique(read["i002"])) == {0, 1, 3, 255}
    del params["mask_values"]["30"]
    dataset = build_dataset("folder", "all", {**params, "num_classes": 4}, registry)
    index = next(i for i in range(3) if dataset.images[i].stem == "i002")
    with pytest.raises(DataError, match=r"holds the value 30, which data.dataset.mask_values"):
        dataset[index]


def test_mask_values_are_checked_without_reading_a_file(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(
        f'base = "{FOLDER_CONFIG}"\n[data]\ndataset = {{ name = "folder", root = "x", '
        'mask_values = { "255" = 300 } }\n'
    )
    assert main(["config", str(config)]) == 2
    assert "mask_values maps 255 to 300" in error_lines(capsys)[0]


def test_a_palette_that_numbers_the_classes_otherwise_is_a_warning(tmp_path, capsys):
    data = write_folder(tmp_path / "data", count=4)
    palette = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    swapped = [[0, 0, 0], [0, 255, 0], [255, 0, 0], [0, 0, 255]]  # the tool's 1 and 2 swapped
    for path in (data / "masks").glob("*.png"):
        save_mask_png(path, np.array(Image.open(path)), swapped)
    config = tmp_path / "c.toml"
    config.write_text(
        f'base = "{FOLDER_CONFIG}"\n[data]\ndataset = {{ name = "folder", root = "{data}", '
        f"palette = {palette} }}\n"
    )
    assert check(config, "--out", tmp_path / "c.png") == 0
    out = capsys.readouterr().out
    assert "draws label 1 in (0, 255, 0), the colour the dataset gives label 2" in out


# -- masks users save: JPEG, RGB with artefacts ------------------------------------------


def test_jpeg_masks_are_named_as_jpeg_not_as_missing(tmp_path, capsys):
    data = write_folder(tmp_path / "data", count=3)
    for path in (data / "masks").glob("*.png"):
        Image.open(path).convert("RGB").save(path.with_suffix(".jpg"), quality=90)
        path.unlink()
    line = refused_run(tmp_path, f'name = "folder"\nroot = "{data}"', capsys)
    assert "3 masks are JPEG files (i000.jpg, i001.jpg, i002.jpg" in line
    assert "masks must be lossless PNGs: JPEG compression changes the values" in line
    with pytest.raises(DataError, match=r"is a JPEG file; masks must be lossless PNGs"):
        read_mask(next((data / "masks").glob("*.jpg")))


def test_rgb_masks_with_compression_artefacts_say_so(tmp_path):
    palette = np.array([[0, 0, 0], [200, 30, 30], [30, 30, 200]], np.uint8)
    labels = np.zeros((24, 32), np.uint8)
    labels[4:20, 4:28] = 1
    labels[8:16, 10:20] = 2
    rgb = palette[labels].astype(np.int16)
    rgb[7:9, 9:21] += 9  # what a JPEG round trip leaves near an edge
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"all close to palette colours .*compression artefacts"):
        read_mask(tmp_path / "m.png", palette)


# -- split lists -------------------------------------------------------------------------


def test_a_split_list_line_with_spaces_names_that_file(tmp_path, registry):
    data = write_folder(tmp_path / "data", count=2)
    images, masks = data / "images", data / "masks"
    (images / "i000.jpg").rename(images / "my photo.jpg")
    (masks / "i000.png").rename(masks / "my photo.png")
    (images / "i001.jpg").rename(images / "my.jpg")
    (masks / "i001.png").rename(masks / "my.png")
    (data / "lists").mkdir()
    (data / "lists" / "train.txt").write_text("my photo\n")
    (data / "lists" / "val.txt").write_text("my.jpg\n")
    params = {"root": str(data), "splits_dir": "lists", "num_classes": 4}
    assert build_dataset("folder", "train", params, registry)[0].name == "my photo"
    assert build_dataset("folder", "val", params, registry)[0].name == "my"


# -- the command: output, picture, what it never writes over ---------------------------


def test_data_check_prints_counts_shares_and_writes_its_picture(tmp_path, capsys):
    data = write_folder(tmp_path / "data", count=10)
    picture = tmp_path / "data_check.png"
    assert check(data, "--out", picture) == 0
    out = capsys.readouterr().out
    assert "dataset 'folder'" in out and "4 classes" in out
    for fragment in ("images", "with masks", "24×32", "RGB 9", "L 9", "in memory", "usable"):
        assert fragment in out, fragment
    with Image.open(picture) as image:
        assert image.info["Software"] == SOFTWARE and image.size[0] > 800
    # an earlier picture of the command is replaced; any other file needs --overwrite
    assert check(data, "--out", picture) == 0
    other = tmp_path / "mine.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(other)
    before = tree_state(tmp_path)
    assert check(data, "--out", other) == 2
    assert "already exists; add --overwrite" in error_lines(capsys)[0]
    assert tree_state(tmp_path) == before


def test_data_check_never_writes_over_a_file_of_the_dataset(tmp_path, capsys):
    data = write_folder(tmp_path / "data", count=4)
    config = tmp_path / "c.toml"
    config.write_text(
        f'base = "{FOLDER_CONFIG}"\n[data]\ndataset = {{ name = "folder", root = "{data}" }}\n'
    )
    before = tree_state(tmp_path)
    for target in (data / "masks" / "i001.png", data / "images" / "i002.jpg", config):
        assert check(config, "--out", target, "--overwrite") == 2
        assert "is also an input of this command" in error_lines(capsys)[0]
    assert tree_state(tmp_path) == before


def test_eval_never_writes_json_over_a_file_of_the_split(tmp_path, capsys):
    data = write_folder(tmp_path / "data", count=6)
    dataset = f'name = "folder"\nroot = "{data}"'
    train_one_epoch(tmp_path, dataset)
    before = tree_state(data)
    mask = sorted((data / "masks").glob("*.png"))[0]
    args = ["eval", str(tmp_path / "run" / "best.pt"), "--split", "all", "--overwrite"]
    assert main([*args, "--json", str(mask)]) == 2
    line = error_lines(capsys)[0]
    assert f"{mask} is also an input of this command" in line
    assert tree_state(data) == before
    assert main([*args, "--json", str(tmp_path / "metrics.json")]) == 0
    assert 0 <= json.loads((tmp_path / "metrics.json").read_text())["miou"] <= 1


def test_check_datasets_reads_each_item_once_and_counts_all_pixels(tmp_path, registry):
    data = write_folder(tmp_path / "data", count=5)
    dataset = build_dataset("folder", "all", {"root": str(data)}, registry)
    report = check_datasets({"train": dataset})
    census = report.censuses["train"]
    assert (census.looked_at, census.annotated, census.size) == (5, 5, 5)
    assert int(census.pixels.sum()) == 5 * 24 * 32
    expected = sum(np.bincount(dataset[i].mask.ravel(), minlength=256) for i in range(5))
    np.testing.assert_array_equal(census.pixels, expected)


def test_data_check_names_a_missing_source_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the picture would go
    assert check(tmp_path / "my_dta") == 2
    (line,) = error_lines(capsys)
    assert "my_dta does not exist; give the dataset's folder or a TOML config" in line
    assert not (tmp_path / "data_check.png").exists()
