"""The built-in datasets: voc, folder and synthetic."""

from __future__ import annotations

import pickle
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from PIL import Image
from segkit_plugins import datasets
from segkit_plugins.datasets import SHAPES
from segkit_plugins.datasets.folder import build_folder
from segkit_plugins.datasets.synthetic import build_synthetic
from segkit_plugins.datasets.voc import build_voc

from segkit import DataError
from segkit.core import default_registry, load_plugins
from segkit.core.config import DataConfig, Part
from segkit.data import (
    SegmentationDataset,
    TrainingSet,
    build_dataset,
    build_train_transform,
    voc_palette,
)
from segkit.infer.pictures import save_mask_png

TRAIN_IDS = ["2007_000032", "2007_000039", "2007_000063"]
VAL_IDS = ["2007_000033", "2007_000042"]
EXTRA_IDS = ["2008_000002"]  # only in the SBD-augmented list


def write_pair(image_path, mask_path, seed, size=(30, 40), labels=21, mode="P"):
    """A random JPEG/PNG image and a mask with labels 0..labels-1 and a 255 border."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros(size, np.uint8)
    mask[5:20, 5:25] = rng.integers(1, labels)
    mask[4, 4:26] = 255
    Image.fromarray(image).save(image_path, quality=95)
    if mode == "P":
        save_mask_png(mask_path, mask, voc_palette())
    else:
        Image.fromarray(mask, "L").save(mask_path)
    return image, mask


@pytest.fixture
def voc_root(tmp_path):
    """A tiny VOCdevkit: JPEGs, palette PNG masks and split lists."""
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / folder).mkdir(parents=True)
    masks = {}
    for i, stem in enumerate(TRAIN_IDS + VAL_IDS):
        _, masks[stem] = write_pair(
            base / "JPEGImages" / f"{stem}.jpg", base / "SegmentationClass" / f"{stem}.png", i
        )
    lists = base / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(TRAIN_IDS) + "\n")
    (lists / "val.txt").write_text("\n".join(VAL_IDS) + "\n")
    (lists / "trainval.txt").write_text("\n".join(TRAIN_IDS + VAL_IDS) + "\n")
    return tmp_path / "VOCdevkit", masks


@pytest.fixture
def voc_aug_root(voc_root):
    """The same tree plus SBD's SegmentationClassAug (grayscale PNGs) and train_aug.txt."""
    root, _ = voc_root
    base = root / "VOC2012"
    (base / "SegmentationClassAug").mkdir()
    aug_masks = {}
    for i, stem in enumerate(TRAIN_IDS + VAL_IDS + EXTRA_IDS):
        _, aug_masks[stem] = write_pair(
            base / "JPEGImages" / f"{stem}.jpg",
            base / "SegmentationClassAug" / f"{stem}.png",
            100 + i,
            mode="L",
        )
    # DeepLab's list format: image and mask paths on one line.
    lines = [f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png" for s in TRAIN_IDS + EXTRA_IDS]
    (base / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(lines) + "\n")
    return root, aug_masks


# -- voc --------------------------------------------------------------------------


def test_voc_reads_images_and_palette_masks_as_indices(voc_root):
    root, masks = voc_root
    for given_root in (root, root / "VOC2012"):
        dataset = build_voc("train", str(given_root))
        assert isinstance(dataset, SegmentationDataset)
        assert len(dataset) == 3 and dataset.num_classes == 21
        assert dataset.class_names[0] == "background" and dataset.class_names[15] == "person"
        assert dataset.palette.shape[0] >= 21 and dataset.palette[1].tolist() == [128, 0, 0]
        assert dataset.splits == ("train", "trainval", "val")
        sample = dataset[1]
        assert sample.name == TRAIN_IDS[1] and sample.path.endswith(f"{TRAIN_IDS[1]}.jpg")
        assert sample.image.shape == (30, 40, 3) and sample.image.dtype == np.uint8
        np.testing.assert_array_equal(sample.mask, masks[TRAIN_IDS[1]])
    assert len(build_voc("val", str(root))) == 2
    assert len(build_voc("trainval", str(root))) == 5


def test_voc_unknown_split_lists_the_available_ones(voc_root):
    root, _ = voc_root
    with pytest.raises(
        DataError, match=r"no split 'vall'.*did you mean 'val'.*train, trainval, val"
    ):
        build_voc("vall", str(root))


def test_voc_empty_split_is_an_error(voc_root):
    root, _ = voc_root
    (root / "VOC2012/ImageSets/Segmentation/empty.txt").write_text("\n")
    with pytest.raises(DataError, match=r"split 'empty' .* is empty"):
        build_voc("empty", str(root))


def test_voc_missing_or_malformed_folder_shows_the_layout_in_one_line(tmp_path, voc_root):
    layout = "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/train.txt}"
    with pytest.raises(DataError, match="does not exist") as info:
        build_voc("train", str(tmp_path / "nowhere"))
    assert layout in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "empty" / "VOC2012").mkdir(parents=True)
    with pytest.raises(DataError, match="has no JPEGImages") as info:
        build_voc("train", str(tmp_path / "empty"))
    assert layout in str(info.value)
    root, _ = voc_root
    (root / "VOC2012" / "JPEGImages" / f"{TRAIN_IDS[0]}.jpg").unlink()
    with pytest.raises(DataError, match=f"1 images of split 'train' are missing.*{TRAIN_IDS[0]}"):
        build_voc("train", str(root))


def test_voc_augmented_auto_trains_on_train_aug(voc_aug_root):
    root, aug_masks = voc_aug_root
    train = build_voc("train", str(root))
    assert len(train) == 4 and train.split == "train"
    assert "train_aug" in train.splits
    extra = train[3]
    assert extra.name == EXTRA_IDS[0]
    np.testing.assert_array_equal(extra.mask, aug_masks[EXTRA_IDS[0]])
    # val keeps the official annotations
    val = build_voc("val", str(root))
    assert val[0].mask_path.endswith(f"SegmentationClass/{VAL_IDS[0]}.png")
    plain = build_voc("train", str(root), augmented=False)
    assert len(plain) == 3 and plain[0].mask_path.endswith(f"SegmentationClass/{TRAIN_IDS[0]}.png")


def test_voc_augmented_true_needs_the_sbd_masks(voc_root):
    root, _ = voc_root
    with pytest.raises(DataError, match="SegmentationClassAug"):
        build_voc("train", str(root), augmented=True)


def test_voc_label_outside_the_classes_is_reported(voc_root):
    root, _ = voc_root
    stem = TRAIN_IDS[0]
    bad = np.zeros((30, 40), np.uint8)
    bad[0, 0] = 40
    save_mask_png(root / "VOC2012" / "SegmentationClass" / f"{stem}.png", bad, voc_palette())
    with pytest.raises(DataError, match=rf"{stem}\.png has label values 40 .* 21 classes"):
        build_voc("train", str(root))[0]


def test_datasets_are_registered_through_the_hook(voc_root):
    others = {ep.name for ep in entry_points(group="segkit")}  # load this plugin alone
    registry = load_plugins(disable=others, extra=(datasets,)).registry
    assert {"voc", "folder", "synthetic"} <= set(registry.names("dataset"))
    root, _ = voc_root
    dataset = build_dataset("voc", "val", {"root": str(root)}, registry=registry)
    assert len(dataset) == 2
    assert len(build_dataset("synthetic", "val", {"val_size": 3}, registry=registry)) == 3


# -- folder -----------------------------------------------------------------------


def make_folder(root, stems, size=(20, 24), labels=4):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for i, stem in enumerate(stems):
        suffix = ".jpg" if i % 2 else ".png"
        write_pair(
            root / "images" / f"{stem}{suffix}", root / "masks" / f"{stem}.png", i, size, labels
        )
    return root


def test_folder_val_fraction_is_a_seeded_partition(tmp_path):
    stems = [f"img{i:02d}" for i in range(10)]
    root = str(make_folder(tmp_path / "data", stems))
    train = build_folder("train", root, class_names=["bg", "a", "b", "c"], val_fraction=0.3)
    val = build_folder("val", root, class_names=["bg", "a", "b", "c"], val_fraction=0.3)
    assert (len(train), len(val)) == (7, 3)
    names = {train[i].name for i in range(7)} | {val[i].name for i in range(3)}
    assert names == set(stems)
    again = build_folder("val", root, class_names=["bg", "a", "b", "c"], val_fraction=0.3)
    assert [p.stem for p in again.images] == [p.stem for p in val.images]
    other = build_folder("val", root, num_classes=4, val_fraction=0.3, seed=5)
    assert [p.stem for p in other.images] != [p.stem for p in val.images]
    assert val.splits == ("train", "val", "all")
    with pytest.raises(DataError, match=r"split 'val' .* is empty"):
        build_folder("val", root, num_classes=4, val_fraction=0.0)


def test_folder_infers_classes_and_reads_samples(tmp_path):
    root = make_folder(tmp_path / "data", ["a", "b", "c"], labels=4)
    dataset = build_folder("all", str(root))
    largest = max(int(np.max(dataset[i].mask[dataset[i].mask != 255])) for i in range(3))
    assert dataset.num_classes == largest + 1
    assert dataset[0].image.shape == (20, 24, 3)


def test_folder_split_lists(tmp_path):
    root = make_folder(tmp_path / "data", ["a", "b", "c", "d.v2"])
    (root / "lists").mkdir()
    (root / "lists" / "train.txt").write_text("a\nb.jpg\n\nc\n")
    (root / "lists" / "val.txt").write_text("d.v2\n")
    train = build_folder("train", str(root), num_classes=4, splits_dir="lists")
    assert [train[i].name for i in range(3)] == ["a", "b", "c"]
    assert train.splits == ("train", "val")
    assert build_folder("val", str(root), num_classes=4, splits_dir="lists")[0].name == "d.v2"
    (root / "lists" / "val.txt").write_text("d.v2.png\nzz\n")
    with pytest.raises(DataError, match=r"val\.txt have no image.*zz"):
        build_folder("val", str(root), num_classes=4, splits_dir="lists")
    with pytest.raises(DataError, match="no split 'test'"):
        build_folder("test", str(root), num_classes=4, splits_dir="lists")


def test_folder_unmatched_files_are_named(tmp_path):
    root = make_folder(tmp_path / "data", ["a", "b", "c"])
    (root / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"1 images .* have no mask .*\(b\)"):
        build_folder("all", str(root), num_classes=4)
    root = make_folder(tmp_path / "other", ["a", "b"])
    for stem in ("x1", "x2", "x3", "x4"):
        save_mask_png(root / "masks" / f"{stem}.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match=r"4 masks .* no image .*x1, x2, x3 and 1 more"):
        build_folder("all", str(root), num_classes=4)
    with pytest.raises(DataError, match=r"expected .*\{images,masks\}"):
        build_folder("all", str(tmp_path / "missing"))


def test_folder_rgb_masks_use_the_given_palette(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    palette = [[0, 0, 0], [255, 0, 0], [0, 0, 255]]
    mask = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.array(palette, np.uint8)[mask]).save(root / "masks" / "a.png")
    dataset = build_folder("all", str(root), class_names=["bg", "red", "blue"], palette=palette)
    np.testing.assert_array_equal(dataset[0].mask, mask)
    with pytest.raises(DataError, match=r"palette has 3 colours .* 4 classes"):
        build_folder("all", str(root), class_names=["a", "b", "c", "d"], palette=palette)


def test_folder_size_mismatch_is_reported(tmp_path):
    root = make_folder(tmp_path / "data", ["a"])
    save_mask_png(root / "masks" / "a.png", np.zeros((21, 24), np.uint8))
    with pytest.raises(DataError, match=r"a\.png is 21×24 .* is 20×24"):
        build_folder("all", str(root), num_classes=4)[0]


# -- synthetic --------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed_and_split():
    first = build_synthetic("train", seed=3, train_size=4)
    again = build_synthetic("train", seed=3, train_size=4)
    other_seed = build_synthetic("train", seed=4, train_size=4)
    val = build_synthetic("val", seed=3, val_size=4)
    for i in range(4):
        np.testing.assert_array_equal(first[i].image, again[i].image)
        np.testing.assert_array_equal(first[i].mask, again[i].mask)
        assert first[i].image.shape != other_seed[i].image.shape or not np.array_equal(
            first[i].image, other_seed[i].image
        )
        assert not np.array_equal(first[i].mask, val[i].mask)
    np.testing.assert_array_equal(first[-1].image, first[3].image)
    with pytest.raises(IndexError):
        first[4]


def test_synthetic_sizes_are_in_range_and_not_multiples_of_32():
    dataset = build_synthetic("val", val_size=40)
    sizes = [dataset[i].image.shape[:2] for i in range(40)]
    assert all(97 <= h <= 161 and 97 <= w <= 161 for h, w in sizes)
    assert sum(h % 32 != 0 and w % 32 != 0 for h, w in sizes) >= 30
    assert len(set(sizes)) > 20
    sample = dataset[0]
    assert sample.image.dtype == np.uint8 and sample.mask.shape == sample.image.shape[:2]


def test_synthetic_classes_all_appear_in_balanced_amounts():
    dataset = build_synthetic("train", train_size=60)
    assert dataset.class_names == ["background", *SHAPES[:4]]
    pixels = np.zeros(dataset.num_classes, np.int64)
    images_with = np.zeros(dataset.num_classes, np.int64)
    for i in range(60):
        counts = np.bincount(dataset[i].mask.ravel(), minlength=dataset.num_classes)
        assert counts.size == dataset.num_classes  # no label outside the classes
        pixels += counts
        images_with += counts > 0
    assert (images_with[1:] >= 10).all()
    shapes = pixels[1:] / pixels[1:].sum()
    assert shapes.min() > 0.5 / 4 and shapes.max() < 2 / 4
    assert 0.1 < pixels[1:].sum() / pixels.sum() < 0.6  # shapes are large, not specks
    assert len(build_synthetic("val", num_classes=7, val_size=1).class_names) == 7


def test_synthetic_colour_does_not_tell_the_class():
    dataset = build_synthetic("train", seed=1, train_size=300)
    colours, labels = [], []
    for i in range(300):
        sample = dataset[i]
        objects = sample.mask > 0
        colours.append(sample.image[objects])
        labels.append(sample.mask[objects])
    # The mean colour of every shape class is close to the mean colour of all shapes.
    all_colours, all_labels = np.concatenate(colours).astype(np.float64), np.concatenate(labels)
    overall = all_colours.mean(0)
    for label in range(1, dataset.num_classes):
        assert np.abs(all_colours[all_labels == label].mean(0) - overall).max() < 20
    # A colour-histogram classifier fitted on 200 images is at chance on 100 others.
    bins = [(c // 64).astype(np.int64) @ np.array([16, 4, 1]) for c in colours]
    histogram = np.zeros((64, dataset.num_classes))
    np.add.at(histogram, (np.concatenate(bins[:200]), np.concatenate(labels[:200])), 1)
    guess = histogram[:, 1:].argmax(1) + 1
    accuracy = (guess[np.concatenate(bins[200:])] == np.concatenate(labels[200:])).mean()
    assert accuracy < 0.36  # chance is 0.25 over four shapes


def test_synthetic_split_errors_and_parameter_checks():
    with pytest.raises(DataError, match=r"no split 'test' .*train, val"):
        build_synthetic("test")
    with pytest.raises(DataError, match=r"split 'val' .* is empty"):
        build_synthetic("val", val_size=0)
    with pytest.raises(DataError, match=r"num_classes must be 2..7"):
        build_synthetic("train", num_classes=9)
    with pytest.raises(DataError, match="min_size"):
        build_synthetic("train", min_size=120, max_size=100)


def test_synthetic_is_reproducible_through_dataloader_workers():
    dataset = build_synthetic("train", seed=2, train_size=8)
    dataset[0]  # fill the cache; pickling must not carry it
    assert len(pickle.loads(pickle.dumps(dataset))._cache) == 0
    data = DataConfig(crop_size=64, augment=[Part("random_scale", {"range": [0.5, 1.0]})])
    transform = build_train_transform(data, default_registry())
    training_set = TrainingSet(dataset, transform, seed=5)

    def batches(workers):
        loader = torch.utils.data.DataLoader(training_set, batch_size=4, num_workers=workers)
        return [images for images, _ in loader]

    for serial, parallel in zip(batches(0), batches(2), strict=True):
        assert torch.equal(serial, parallel)
