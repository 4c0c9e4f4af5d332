"""`segkit predict`, `segkit eval` and `segkit export` on a small checkpoint, checked
against predictions made directly with the Segmenter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from segkit.cli import main
from segkit.data import EvalTransform, build_dataset
from segkit.infer import ConfusionMatrix, Segmenter

from .infer_fixtures import CLASS_NAMES, random_image, tiny_checkpoint
from .messages import one_error_line

CRF = '\n[[postprocessors]]\nname = "densecrf_torch"\niterations = 1\n'


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, registry):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), registry)


@pytest.fixture(scope="module")
def crf_checkpoint(tmp_path_factory, registry):
    return tiny_checkpoint(tmp_path_factory.mktemp("crf"), registry, CRF)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name, (height, width) in {"a": (40, 56), "b": (40, 56), "c": (51, 37)}.items():
        Image.fromarray(random_image(height, width, seed=ord(name))).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_a_folder_with_probabilities(checkpoint, photos, tmp_path, capsys, registry):
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(photos), "--out", str(out), "--save-probs"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "3 image(s) predicted" in said and str(out) in said
    segmenter = Segmenter.from_checkpoint(checkpoint, "cpu", registry)
    for name in "abc":
        image = np.asarray(Image.open(photos / f"{name}.png"))
        expected = segmenter.predict(image)
        probs = np.load(out / f"{name}_probs.npy")
        assert probs.dtype == np.float16 and probs.shape == (5, *image.shape[:2])
        np.testing.assert_allclose(probs, expected.probs, atol=1e-3)
        mask = np.asarray(Image.open(out / f"{name}_mask.png"))
        np.testing.assert_array_equal(mask, expected.labels)
        assert (out / f"{name}_overlay.png").is_file() and (out / f"{name}_panel.png").is_file()
    assert not (out / "notes_mask.png").exists()


def test_predict_a_glob_with_tta_and_tiles(checkpoint, photos, tmp_path, registry):
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(photos / "[ab].png"), "--out", str(out)]
    assert main([*argv, "--tta", "--tile", "32", "--overlap", "0.5"]) == 0
    assert sorted(p.name for p in out.glob("*_mask.png")) == ["a_mask.png", "b_mask.png"]
    segmenter = Segmenter.from_checkpoint(checkpoint, "cpu", registry)
    segmenter.inference = segmenter.inference.override(
        segmenter.config.predict, tta=True, tile=32, overlap=0.5
    )
    expected = segmenter.predict(photos / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a_mask.png")), expected.labels)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["{empty}"], ["holds no images"]),
        (["{photos}/*.jpg"], ["no file matches", "*.jpg"]),
        (["{photos}/missing.png"], ["image not found"]),
        (["{photos}", "--tile", "4"], ["smaller than the model's output stride 8"]),
        (
            ["{photos}", "--tile", "64", "--overlap", "0.95"],
            ["--overlap must be a finite number in [0, 0.9]"],
        ),
    ],
    ids=["empty-folder", "glob-matches-nothing", "missing-file", "tile-below-stride", "overlap"],
)
def test_predict_bad_input_is_one_line(checkpoint, photos, tmp_path, capsys, args, fragments):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", photos=photos) for a in args]
    assert main(["predict", str(checkpoint), *args, "--out", str(tmp_path / "o")]) == 2
    one_error_line(capsys, *fragments)


def reference_metrics(segmenter, registry, count, tta=False, postprocess=False):
    """Metrics from Segmenter.predict on each val image, scored apart from `segkit eval`."""
    part = segmenter.config.data.dataset
    dataset = build_dataset(part.name, "val", part.params, registry)
    matrix = ConfusionMatrix(len(CLASS_NAMES), torch.device("cpu"))
    transform = EvalTransform(segmenter.config.data.mean, segmenter.config.data.std)
    for index in range(count):
        sample = dataset[index]
        labels = segmenter.predict(sample.image, postprocess=postprocess, tta=tta).labels
        _, mask = transform(sample)
        matrix.update(torch.from_numpy(labels.astype(np.int64))[None], mask[None])
    return matrix.compute(CLASS_NAMES)


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
def test_eval_writes_the_runs_summary_format(crf_checkpoint, tmp_path, capsys, registry, tta):
    out = tmp_path / "summary.json"
    argv = ["eval", str(crf_checkpoint), "--max-images", "3", "--json", str(out)]
    assert main([*argv, "--tta" if tta else "--no-tta"]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "s/image" in printed and str(out) in printed
    summary = json.loads(out.read_text())
    assert set(summary) == {
        "pixel_acc", "mean_class_acc", "miou", "fw_iou", "per_class_iou", "postprocessed"
    }  # fmt: skip
    assert list(summary["postprocessed"]) == ["densecrf_torch"]
    segmenter = Segmenter.from_checkpoint(crf_checkpoint, "cpu", registry)
    raw = reference_metrics(segmenter, registry, 3, tta=tta)
    assert summary["miou"] == pytest.approx(raw["miou"])
    assert summary["per_class_iou"] == pytest.approx(raw["per_class_iou"])
    refined = reference_metrics(segmenter, registry, 3, tta=tta, postprocess=True)
    assert summary["postprocessed"]["densecrf_torch"]["miou"] == pytest.approx(refined["miou"])


def test_eval_without_the_crf(crf_checkpoint, tmp_path):
    out = tmp_path / "s.json"
    argv = ["eval", str(crf_checkpoint), "--max-images", "2", "--no-crf", "--json", str(out)]
    assert main(argv) == 0
    assert json.loads(out.read_text())["postprocessed"] == {}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--json", "{tmp}/no/such/folder/s.json"], ["--json", "does not exist"]),
        (["--json", "{tmp}"], ["--json", "is a folder"]),
        (["--data-root", "{tmp}"], ["--data-root", "'synthetic' has no root folder"]),
        (["--tile", "2"], ["smaller than the model's output stride"]),
        (["--overlap", "1.5"], ["--overlap must be a finite number in [0, 0.9]"]),
        (["--split", "tset"], ["tset"]),
    ],
    ids=["json-folder-missing", "json-is-folder", "data-root", "tile", "overlap", "split"],
)
def test_eval_bad_input_is_one_line(checkpoint, tmp_path, capsys, args, fragments):
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["eval", str(checkpoint), *args]) == 2
    one_error_line(capsys, *fragments)


def test_export_refuses_a_postprocessor_until_told(crf_checkpoint, tmp_path, capsys):
    assert main(["export", str(crf_checkpoint), "--out", str(tmp_path / "m.onnx")]) == 2
    one_error_line(capsys, "densecrf_torch", "cannot be exported", "--no-crf")


def test_export_without_onnx_names_the_extra(checkpoint, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 2
    one_error_line(capsys, "pip install 'segkit[export]'")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load is deprecated
def test_export_torchscript_runs_at_any_size(checkpoint, tmp_path, capsys, registry):
    out = tmp_path / "m.pt"
    assert main(["export", str(checkpoint), "--out", str(out)]) == 0
    assert "TorchScript" in capsys.readouterr().out
    extra = {"segkit.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    info = json.loads(extra["segkit.json"])
    assert json.loads(info["segkit_class_names"]) == CLASS_NAMES
    model = Segmenter.from_checkpoint(checkpoint, "cpu", registry).model
    images = torch.randn(2, 3, 77, 45)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(images), model(images), atol=1e-5, rtol=0)
