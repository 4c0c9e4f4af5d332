"""The Python API checks its arguments as the command line does, with segkit's errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import segkit
from segkit import ConfigError, DataError, SegkitError
from segkit.infer import Segmenter

from .infer_fixtures import random_image, tiny_checkpoint, tiny_config


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory, registry):
    path = tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), registry)
    return Segmenter.from_checkpoint(path, "cpu", registry)


@pytest.fixture(scope="module")
def config(tmp_path_factory, registry):
    return tiny_config(tmp_path_factory.mktemp("config"), registry)


@pytest.mark.parametrize("bad", [0, 1, -3, 256, 2.5, True, "5"])
def test_build_model_num_classes(config, registry, bad):
    with pytest.raises(ConfigError) as info:
        segkit.build_model(config, num_classes=bad, registry=registry)
    assert str(info.value) == (
        f"num_classes must be an integer in [2, 255] (leave it out to take the dataset's), "
        f"got {bad!r}"
    )


def test_build_model_wants_a_config(registry):
    with pytest.raises(ConfigError, match=r"build_model takes a segkit Config .*got dict"):
        segkit.build_model({"model": {}}, num_classes=3, registry=registry)


def test_api_and_cli_share_the_message(tmp_path, capsys, config, registry):
    from segkit.cli import main

    from .tiny import write_tiny_config

    with pytest.raises(ConfigError) as info:
        segkit.build_model(config, num_classes=0, registry=registry)
    assert main(["summary", str(write_tiny_config(tmp_path)), "--num-classes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {str(info.value).replace('num_classes', '--num-classes', 1)}"


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        (np.zeros((8, 8), np.uint8), "got shape 8×8 of uint8"),
        (np.zeros((8, 8, 4), np.uint8), "got shape 8×8×4 of uint8"),
        (np.zeros((8, 8, 3), np.float32), "got shape 8×8×3 of float32"),
        (np.zeros((3, 8, 8), np.uint8), "got shape 3×8×8 of uint8"),
        (np.zeros((0, 8, 3), np.uint8), "image is empty (8×0 pixels)"),
        ([[1, 2, 3]], "got list"),
        (None, "got NoneType"),
    ],
)
def test_predict_checks_the_array(segmenter, image, fragment):
    with pytest.raises(DataError) as info:
        segmenter.predict(image)
    assert "image must be an H×W×3 uint8 RGB array" in str(info.value) or "empty" in fragment
    assert fragment in str(info.value)


@settings(max_examples=20, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.float32, np.int64, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    )
)
def test_generated_arrays_predict_or_raise_a_data_error(segmenter, array):
    good = array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    good = good and 0 not in array.shape[:2]
    if good:
        assert segmenter.predict(array, postprocess=False).labels.shape == array.shape[:2]
    else:
        with pytest.raises(DataError):
            segmenter.predict(array)


def test_predict_accepts_paths_and_pil_images(segmenter, tmp_path):
    array = random_image(20, 24)
    Image.fromarray(array).save(tmp_path / "x.png")
    by_path = segmenter.predict(tmp_path / "x.png", postprocess=False)
    by_pil = segmenter.predict(Image.fromarray(array).convert("L"), postprocess=False)
    assert by_path.labels.shape == by_pil.labels.shape == (20, 24)


def test_predict_batch_and_switches(segmenter):
    with pytest.raises(DataError, match=r"non-empty list of images, got an empty list"):
        segmenter.predict_batch([])
    with pytest.raises(DataError, match=r"got ndarray; use predict for one image"):
        segmenter.predict_batch(random_image(8, 8))
    with pytest.raises(ConfigError, match=r"postprocess must be True or False, got 'no'"):
        segmenter.predict(random_image(8, 8), postprocess="no")
    with pytest.raises(ConfigError, match=r"tta must be True, False or None, got 1"):
        segmenter.predict(random_image(8, 8), tta=1)


def test_from_checkpoint_names_the_device_argument(tmp_path, registry):
    path = tiny_checkpoint(tmp_path, registry)
    with pytest.raises(SegkitError, match=r"^device: unknown device 'gpu'"):
        Segmenter.from_checkpoint(path, "gpu", registry)


def test_api_functions_check_their_arguments(tmp_path, registry):
    from .tiny import write_tiny_config

    config = write_tiny_config(tmp_path)
    with pytest.raises(ConfigError, match=r"overrides must be a list of 'key=value' strings"):
        segkit.load_config(config, "train.lr=0.1", registry=registry)
    with pytest.raises(ConfigError, match=r"an override must be a 'key=value' string, got 3"):
        segkit.load_config(config, [3], registry=registry)
    with pytest.raises(ConfigError, match=r"train.lr must be a finite number > 0, got 0.0"):
        segkit.load_config(config, ["train.lr=0.0"], registry=registry)
    with pytest.raises(ConfigError, match=r"params must be a mapping .*got list"):
        segkit.build_dataset("synthetic", "val", [1, 2], registry=registry)
    with pytest.raises(ConfigError, match=r"split must be a name such as 'val', got 0"):
        segkit.build_dataset("synthetic", 0, registry=registry)
    with pytest.raises(ConfigError, match=r"iterations must be >= 0"):
        segkit.build_postprocessor("densecrf", registry=registry, iterations=-1)


def test_run_config_checks_before_the_run_folder(tmp_path, registry):
    from segkit.core import get_plugins
    from segkit.core.config import load_config
    from segkit.train import run_config

    from .tiny import write_tiny_config

    config = load_config(write_tiny_config(tmp_path), ["train.optimizer.momentum=2.0"])
    with pytest.raises(ConfigError, match=r"train.optimizer: optimizer 'sgd': momentum"):
        run_config(config, tmp_path / "run", get_plugins())
    assert not (tmp_path / "run").exists()
