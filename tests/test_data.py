"""The core data layer: files, checks, palettes, transforms and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from segkit import DataError
from segkit.core import default_registry
from segkit.core.config import DataConfig, Part
from segkit.data import (
    IGNORE_INDEX,
    EvalSet,
    EvalTransform,
    FileDataset,
    Sample,
    TrainingSet,
    TrainTransform,
    build_train_transform,
    check_sample,
    collate_eval,
    denormalize,
    normalize,
    read_image,
    read_mask,
    select_split,
    voc_palette,
)
from segkit.infer.pictures import colorize, overlay, save_mask_png

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def random_image(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# -- reading images ---------------------------------------------------------------


def test_read_image_rgb_png_is_exact(tmp_path):
    image = random_image()
    Image.fromarray(image).save(tmp_path / "a.png")
    read = read_image(tmp_path / "a.png")
    assert read.dtype == np.uint8 and read.shape == (20, 30, 3)
    np.testing.assert_array_equal(read, image)


def test_read_image_grayscale_becomes_three_equal_channels(tmp_path):
    gray = random_image()[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    read = read_image(tmp_path / "g.png")
    assert read.shape == (20, 30, 3)
    for channel in range(3):
        np.testing.assert_array_equal(read[..., channel], gray)


def test_read_image_rgba_drops_alpha(tmp_path):
    rgba = np.concatenate([random_image(), np.full((20, 30, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    read = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(read, rgba[..., :3])


def test_read_image_16_bit_is_scaled_to_8_bit(tmp_path):
    values = np.array([[0, 257, 65535], [32896, 1000, 65000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode in ("I;16", "I")  # really a 16-bit file
    read = read_image(tmp_path / "deep.png")
    expected = np.round(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(read[..., 0], expected)
    np.testing.assert_array_equal(read[..., 2], expected)


def test_read_image_palette_and_cmyk_are_converted(tmp_path):
    image = random_image()
    Image.fromarray(image).convert("P").save(tmp_path / "p.png")
    palette_read = read_image(tmp_path / "p.png")
    assert palette_read.shape == (20, 30, 3)
    np.testing.assert_array_equal(
        palette_read, np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    )
    Image.fromarray(image).convert("CMYK").save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (20, 30, 3)


def test_truncated_jpeg_raises_data_error_naming_the_file(tmp_path):
    Image.fromarray(random_image(64, 64)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"half\.jpg.*truncated"):
        read_image(tmp_path / "half.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_missing_and_non_image_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "nope.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.jpg"):
        read_image(tmp_path / "notes.jpg")


# -- reading masks ----------------------------------------------------------------


def test_read_mask_palette_png_gives_indices_not_colours(tmp_path):
    mask = np.array([[0, 1, 2], [15, 255, 20]], dtype=np.uint8)
    save_mask_png(tmp_path / "m.png", mask, voc_palette())
    with Image.open(tmp_path / "m.png") as written:
        assert written.mode == "P"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


def test_read_mask_grayscale_values(tmp_path):
    mask = np.array([[0, 3], [255, 1]], dtype=np.uint8)
    Image.fromarray(mask, "L").save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


def test_read_mask_rgb_maps_colours_through_the_palette(tmp_path):
    palette = voc_palette()
    mask = np.array([[0, 1, 2], [3, 255, 1]], dtype=np.uint8)
    Image.fromarray(palette[mask]).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png", palette), mask)
    with pytest.raises(DataError, match=r"RGB image.*palette"):
        read_mask(tmp_path / "rgb.png")


def test_read_mask_rgb_with_unknown_colour_names_it(tmp_path):
    colours = np.zeros((2, 2, 3), np.uint8)
    colours[0, 0] = (1, 2, 3)
    Image.fromarray(colours).save(tmp_path / "odd.png")
    with pytest.raises(DataError, match=r"odd\.png.*\(1, 2, 3\)"):
        read_mask(tmp_path / "odd.png", voc_palette(21))


def test_read_mask_16_bit_values_above_255_are_refused(tmp_path):
    Image.fromarray(np.array([[1, 300]], dtype=np.uint16)).save(tmp_path / "m16.png")
    with pytest.raises(DataError, match="above 255"):
        read_mask(tmp_path / "m16.png")
    Image.fromarray(np.array([[1, 255]], dtype=np.uint16)).save(tmp_path / "ok16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "ok16.png"), [[1, 255]])


# -- checking samples -------------------------------------------------------------


def test_check_sample_size_mismatch_names_both_sizes_and_the_file():
    sample = Sample(random_image(20, 30), np.zeros((21, 30), np.uint8), "x", "/d/x.jpg", "/d/x.png")
    with pytest.raises(DataError, match=r"/d/x\.png is 21×30.*20×30") as info:
        check_sample(sample, 3)
    assert "\n" not in str(info.value)


def test_check_sample_bad_labels_name_the_values_and_the_fix():
    mask = np.zeros((20, 30), np.uint8)
    mask[0, :3] = [3, 7, 255]
    sample = Sample(random_image(), mask, "x", "/d/x.jpg", "/d/x.png")
    with pytest.raises(DataError, match=r"x\.png has label values 3, 7 .* 3 classes.*255"):
        check_sample(sample, 3)
    check_sample(sample, 8)  # 255 is ignore, never an error
    check_sample(Sample(random_image(), None, "x"), 2)


def test_file_dataset_reads_and_checks(tmp_path):
    image = random_image()
    Image.fromarray(image).save(tmp_path / "a.png")
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 2
    save_mask_png(tmp_path / "a_mask.png", mask, voc_palette())
    dataset = FileDataset(
        [tmp_path / "a.png"], [tmp_path / "a_mask.png"], ["bg", "x", "y"], split="train"
    )
    sample = dataset[0]
    assert (dataset.num_classes, len(dataset), sample.name) == (3, 1, "a")
    assert sample.path == str(tmp_path / "a.png")
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_array_equal(sample.mask, mask)
    two_classes = FileDataset([tmp_path / "a.png"], [tmp_path / "a_mask.png"], ["bg", "x"])
    with pytest.raises(DataError, match="label values 2"):
        two_classes[0]


def test_select_split_lists_what_exists():
    with pytest.raises(DataError, match=r"no split 'tran'.*did you mean 'train'.*train, val"):
        select_split("demo", "tran", {"train": [1], "val": [2]})
    with pytest.raises(DataError, match="split 'val' of dataset demo is empty"):
        select_split("demo", "val", {"train": [1], "val": []})


# -- palettes and pictures --------------------------------------------------------


def test_voc_palette_known_colours():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[15].tolist() == [192, 128, 128]  # person
    assert palette[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in palette}) == 256
    np.testing.assert_array_equal(voc_palette(21), palette[:21])


def test_colorize_and_overlay():
    palette = [[10, 20, 30], [200, 100, 0]]
    mask = np.array([[0, 1], [255, 1]], dtype=np.uint8)
    colours = colorize(mask, palette)
    assert colours[0, 0].tolist() == [10, 20, 30] and colours[0, 1].tolist() == [200, 100, 0]
    assert colours[1, 0].tolist() == [224, 224, 192]  # ignore: the VOC colour
    image = np.full((2, 2, 3), 100, np.uint8)
    blended = overlay(image, mask, palette, alpha=0.5)
    assert blended[0, 1].tolist() == [150, 100, 50]
    assert blended[1, 0].tolist() == [100, 100, 100]  # ignore pixels are left alone


def test_normalize_denormalize_round_trip():
    image = random_image()
    tensor = normalize(image, MEAN, STD)
    assert tensor.shape == (3, 20, 30) and tensor.dtype == torch.float32
    expected = (image[5, 7, 1] / 255 - MEAN[1]) / STD[1]
    assert tensor[1, 5, 7].item() == pytest.approx(expected, abs=1e-6)
    back = denormalize(tensor, MEAN, STD)
    assert back.dtype == torch.uint8
    np.testing.assert_array_equal(back.permute(1, 2, 0).numpy(), image)
    assert denormalize(tensor[None], MEAN, STD).shape == (1, 3, 20, 30)


# -- transforms -------------------------------------------------------------------


def striped_sample(height: int = 24, width: int = 40) -> Sample:
    """A sample whose image encodes its mask, to check both move together."""
    mask = (np.arange(width)[None, :] // 4 % 5).repeat(height, 0).astype(np.uint8)
    mask[: height // 2] += 5  # left/right and top/bottom all differ
    image = np.stack([mask * 20, mask * 10, 255 - mask * 20], axis=2).astype(np.uint8)
    return Sample(image, mask, "striped")


def decode_mask(image_tensor: torch.Tensor) -> np.ndarray:
    pixels = denormalize(image_tensor, MEAN, STD).numpy()
    return (pixels[0].astype(int) + 10) // 20


def make_transform(
    crop: int, scale: tuple[float, float] = (1.0, 1.0), flip: bool = True, extra: tuple = ()
) -> TrainTransform:
    """The config's way: [[data.augment]] steps built through the plugin registry."""
    steps = [Part("random_scale", {"range": list(scale)})] if scale != (1.0, 1.0) else []
    steps += [Part("hflip")] if flip else []
    data = DataConfig(crop_size=crop, augment=[*steps, *extra], mean=list(MEAN), std=list(STD))
    return build_train_transform(data, default_registry())


def test_train_transform_shapes_and_types():
    image, mask = make_transform(16, (0.5, 1.5))(striped_sample(), 0)
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert mask.shape == (16, 16) and mask.dtype == torch.int64


def test_train_transform_pads_with_ignore_and_mean_colour():
    sample = striped_sample(24, 40)
    transform = make_transform(64, flip=False)
    for seed in range(4):
        image, mask = transform(sample, seed)
        # Only the padding is ignore, and the whole 24×40 image is inside the crop
        # (at a random place).
        labelled = (mask != IGNORE_INDEX).nonzero()
        top, left = labelled.min(0).values.tolist()
        assert int((mask == IGNORE_INDEX).sum()) == 64 * 64 - 24 * 40
        np.testing.assert_array_equal(mask[top : top + 24, left : left + 40].numpy(), sample.mask)
        # The mean colour normalises to (almost) zero.
        padding = (mask == IGNORE_INDEX)[None].expand_as(image)
        assert image[padding].abs().max().item() < 0.02


def test_train_transform_flips_image_and_mask_together():
    sample = striped_sample(24, 24)  # the crop is the whole image
    transform = make_transform(24, flip=True)
    outcomes = set()
    for seed in range(12):
        image, mask = transform(sample, seed)
        np.testing.assert_array_equal(decode_mask(image), mask.numpy())
        if np.array_equal(mask.numpy(), sample.mask[:, ::-1]):
            outcomes.add("flipped")
        else:
            np.testing.assert_array_equal(mask.numpy(), sample.mask)
            outcomes.add("kept")
    assert outcomes == {"flipped", "kept"}
    no_flip = make_transform(24, flip=False)
    for seed in range(6):
        np.testing.assert_array_equal(no_flip(sample, seed)[1], sample.mask)


def test_train_transform_scale_keeps_alignment_inside_regions():
    sample = striped_sample(48, 80)
    image, mask = make_transform(40, (1.5, 1.5))(sample, 3)
    decoded = decode_mask(image)
    # Bilinear and nearest resizing agree away from the stripe edges.
    agree = (decoded == mask.numpy()).mean()
    assert agree > 0.6
    assert set(np.unique(mask.numpy())) <= set(np.unique(sample.mask))


def test_rotation_fills_the_mask_with_ignore_and_keeps_labels():
    sample = striped_sample(40, 40)
    transform = make_transform(40, flip=False, extra=(Part("rotation", {"degrees": 45.0}),))
    rotated = [transform(sample, seed)[1] for seed in range(6)]
    assert any((m == IGNORE_INDEX).any() for m in rotated)  # corners rotated in
    for mask in rotated:
        assert set(mask.unique().tolist()) <= {*np.unique(sample.mask).tolist(), IGNORE_INDEX}


def test_photometric_steps_leave_the_mask_alone():
    sample = striped_sample(32, 32)
    steps = (
        Part("color_jitter", {"brightness": 0.5, "hue": 0.2}),
        Part("gaussian_blur", {"p": 1.0}),
    )
    plain = make_transform(32, flip=False)
    transform = make_transform(32, flip=False, extra=steps)
    for seed in range(4):
        image, mask = transform(sample, seed)
        np.testing.assert_array_equal(mask.numpy(), sample.mask)
        assert not torch.equal(image, plain(sample, seed)[0])


def test_train_transform_is_deterministic_given_the_seed_and_leaves_torch_alone():
    sample = striped_sample()
    transform = make_transform(20, (0.5, 2.0))
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = transform(sample, 42)
    assert torch.equal(torch.rand(3), before)  # the caller's random state is untouched
    second = transform(sample, 42)
    third = transform(sample, 43)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], third[0])


def test_train_transform_needs_a_mask():
    with pytest.raises(DataError, match="training needs masks"):
        make_transform(8)(Sample(random_image(), None, "x"), 0)


def test_steps_that_change_the_size_after_the_crop_are_named():
    steps = (Part("random_crop", {"size": 16}), Part("random_scale", {"range": [2.0, 2.0]}))
    transform = make_transform(16, flip=False, extra=steps)
    with pytest.raises(DataError, match="put random_crop after every step that changes the size"):
        transform(striped_sample(), 0)


def test_eval_transform_keeps_full_size():
    sample = striped_sample(23, 37)
    image, mask = EvalTransform(MEAN, STD)(sample)
    assert image.shape == (3, 23, 37) and mask.dtype == torch.int64
    np.testing.assert_array_equal(mask.numpy(), sample.mask)
    assert EvalTransform(MEAN, STD)(Sample(sample.image, None, "x"))[1] is None


class ListDataset(FileDataset):
    """In-memory samples, for the wrappers."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        super().__init__([], None, ["bg"] + [f"c{i}" for i in range(1, 10)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]


def test_training_set_is_reproducible_and_varies_by_epoch_and_index():
    dataset = ListDataset([striped_sample(), striped_sample()])
    transform = make_transform(16, (0.5, 1.5))
    a, b = TrainingSet(dataset, transform, seed=7), TrainingSet(dataset, transform, seed=7)
    assert torch.equal(a[0][0], b[0][0])
    epoch0 = a[0][0]
    a.set_epoch(1)
    assert not torch.equal(epoch0, a[0][0])
    assert not torch.equal(b[0][0], b[1][0])  # same picture, different draws
    loader = torch.utils.data.DataLoader(a, batch_size=2)
    images, masks = next(iter(loader))
    assert images.shape == (2, 3, 16, 16) and masks.shape == (2, 16, 16)


def test_collate_eval_pads_different_sizes():
    samples = [
        striped_sample(10, 20),
        striped_sample(16, 12),
        Sample(random_image(5, 5), None, "n"),
    ]
    eval_set = EvalSet(ListDataset(samples), EvalTransform(MEAN, STD))
    batch = collate_eval([eval_set[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 16, 20)
    assert batch["mask"].shape == (3, 16, 20) and batch["mask"].dtype == torch.int64
    assert batch["original"].shape == (3, 3, 16, 20) and batch["original"].dtype == torch.uint8
    assert batch["size"] == [(10, 20), (16, 12), (5, 5)]
    assert batch["name"] == ["striped", "striped", "n"]
    assert batch["has_mask"] == [True, True, False]
    np.testing.assert_array_equal(batch["mask"][0, :10, :20].numpy(), samples[0].mask)
    assert (batch["mask"][0, 10:] == IGNORE_INDEX).all()
    assert (batch["mask"][1, :, 12:] == IGNORE_INDEX).all()
    assert (batch["mask"][2] == IGNORE_INDEX).all()
    assert (batch["image"][0, :, 10:] == 0).all()
    np.testing.assert_array_equal(
        batch["original"][1, :, :16, :12].permute(1, 2, 0).numpy(), samples[1].image
    )
    loader = torch.utils.data.DataLoader(eval_set, batch_size=2, collate_fn=collate_eval)
    assert [len(b["size"]) for b in loader] == [2, 1]
