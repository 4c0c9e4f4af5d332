"""``segkit refine``: pydensecrf's example, reproduced with either post-processor."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segkit import ConfigError, DataError, PluginError
from segkit.cli import refine as refine_command
from segkit.infer import refine

EXAMPLES = Path(
    os.environ.get(
        "SEGKIT_DENSECRF_EXAMPLES",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "densecrf_examples",
    )
)
PLUGINS = ["densecrf", "densecrf_torch"]
RED, GREEN, BLUE = (200, 30, 30), (30, 160, 40), (20, 40, 190)


def parse(*argv: str | Path) -> argparse.Namespace:
    """The arguments as `segkit refine` reads them: its own, then the post-processor's."""
    parser = argparse.ArgumentParser()
    refine_command.add_arguments(parser)
    args, args.options = parser.parse_known_args([str(a) for a in argv])
    return args


def run_refine(args: argparse.Namespace) -> int:
    return refine_command.run(args)


def two_halves(tmp_path: Path, height: int = 40, width: int = 64):
    """A photo whose colour changes at x = 37 and an annotation that leaves x in 20..50 unknown."""
    rng = np.random.default_rng(0)
    image = np.zeros((height, width, 3))
    image[:, :37] = (90, 120, 200)
    image[:, 37:] = (220, 180, 60)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    annotation = np.zeros((height, width, 3), dtype=np.uint8)
    annotation[:, :20] = RED
    annotation[:, 50:] = GREEN
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray(annotation).save(tmp_path / "rough.png")
    return tmp_path / "photo.png", tmp_path / "rough.png", annotation


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="densecrf_examples folder not present")
@pytest.mark.parametrize("postprocessor", PLUGINS)
@pytest.mark.parametrize("index", [1, 2, 3])
def test_reproduces_pydensecrf_example_outputs(tmp_path, index, postprocessor, capsys):
    out = tmp_path / f"out{index}.png"
    args = parse(
        EXAMPLES / f"im{index}.png",
        EXAMPLES / f"anno{index}.png",
        "--out",
        out,
        "--postprocessor",
        postprocessor,
    )
    assert run_refine(args) == 0
    assert str(out) in capsys.readouterr().out
    expected = np.asarray(Image.open(EXAMPLES / f"out{index}.png").convert("RGB"))
    result = np.asarray(Image.open(out).convert("RGB"))
    assert result.shape == expected.shape
    assert (result == expected).all(2).mean() >= 0.99


@pytest.mark.parametrize("postprocessor", PLUGINS)
def test_unknown_band_snaps_to_the_colour_edge(tmp_path, postprocessor):
    photo, rough, annotation = two_halves(tmp_path)
    out = tmp_path / "refined.png"
    run_refine(parse(photo, rough, "--out", out, "--postprocessor", postprocessor))
    result = np.asarray(Image.open(out))
    colours = {tuple(c) for c in result.reshape(-1, 3)}
    assert colours == {RED, GREEN}  # the annotation's colours, nothing else
    is_red = (result == RED).all(2)
    assert is_red[:, :35].mean() > 0.97 and not is_red[:, 39:].any()
    labelled = annotation.any(2)
    assert (result == annotation).all(2)[labelled].mean() > 0.99


def test_both_post_processors_write_the_same_labels(tmp_path):
    photo, rough, _ = two_halves(tmp_path)
    outputs = []
    for postprocessor in PLUGINS:
        out = tmp_path / f"{postprocessor}.png"
        run_refine(parse(photo, rough, "--out", out, "--postprocessor", postprocessor))
        outputs.append(np.asarray(Image.open(out)))
    assert (outputs[0] == outputs[1]).all(2).mean() >= 0.99


def test_kernel_options_are_passed_on(tmp_path):
    photo, rough, annotation = two_halves(tmp_path)
    out = tmp_path / "none.png"
    run_refine(parse(photo, rough, "--out", out, "--iterations", "0"))
    result = np.asarray(Image.open(out))
    labelled = annotation.any(2)
    # without iterations each labelled pixel keeps its label; unknown ones tie, the first wins
    assert (result == annotation).all(2)[labelled].all()
    assert (result[~labelled] == GREEN).all()  # green sorts before red as 0xRRGGBB
    strong = tmp_path / "strong.png"
    run_refine(
        parse(photo, rough, "--out", strong, "--bilateral-compat", "0", "--gaussian-sxy", "1")
    )
    assert not np.array_equal(np.asarray(Image.open(strong)), np.asarray(Image.open(out)))


def test_palette_annotation_and_nested_output_folder(tmp_path):
    photo, rough, _ = two_halves(tmp_path)
    palette = Image.open(rough).convert("P", palette=Image.Palette.ADAPTIVE, colors=3)
    palette.save(tmp_path / "palette.png")
    out = tmp_path / "deep" / "er" / "refined.png"
    run_refine(parse(photo, tmp_path / "palette.png", "--out", out, "--postprocessor", "densecrf"))
    assert {tuple(c) for c in np.asarray(Image.open(out)).reshape(-1, 3)} <= {RED, GREEN}


def test_labels_and_probabilities_follow_pydensecrf():
    from pydensecrf.utils import unary_from_labels

    annotation = np.zeros((3, 4, 3), dtype=np.uint8)
    annotation[0, :] = BLUE
    annotation[1, :2] = RED
    annotation[2, 3] = GREEN
    colors, labels, unknown = refine.split_colors(annotation)
    assert unknown and [tuple(c) for c in colors] == [BLUE, GREEN, RED]  # by 0xRRGGBB
    probs = refine.probabilities_from_labels(labels, 3, 0.7, unknown)
    expected = np.exp(-unary_from_labels(labels, 3, gt_prob=0.7, zero_unsure=True))
    assert np.allclose(probs[0].reshape(3, -1).numpy(), expected, atol=1e-6)
    colors, labels, unknown = refine.split_colors(annotation[:2, :2])
    assert not unknown and labels.max() == 1


def test_bad_inputs(tmp_path):
    photo, rough, annotation = two_halves(tmp_path)
    out = tmp_path / "x.png"
    Image.fromarray(annotation[:, :-1]).save(tmp_path / "narrow.png")
    with pytest.raises(DataError, match="must have the photograph's size"):
        run_refine(parse(photo, tmp_path / "narrow.png", "--out", out))
    single = annotation.copy()
    single[:, 50:] = 0
    Image.fromarray(single).save(tmp_path / "single.png")
    with pytest.raises(DataError, match="single label colour"):
        run_refine(parse(photo, tmp_path / "single.png", "--out", out))
    Image.fromarray(np.zeros_like(annotation)).save(tmp_path / "black.png")
    with pytest.raises(DataError, match="no labelled pixels"):
        run_refine(parse(photo, tmp_path / "black.png", "--out", out))
    with pytest.raises(DataError, match="not found"):
        run_refine(parse(tmp_path / "missing.png", rough, "--out", out))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read"):
        run_refine(parse(photo, tmp_path / "text.png", "--out", out))
    with pytest.raises(ConfigError, match="--gt-prob"):
        run_refine(parse(photo, rough, "--out", out, "--gt-prob", "1"))
    with pytest.raises(ConfigError, match="bilateral_sxy"):
        run_refine(parse(photo, rough, "--out", out, "--bilateral-sxy", "0"))
    with pytest.raises(PluginError, match="densecrf"):
        run_refine(parse(photo, rough, "--out", out, "--postprocessor", "densecfr"))
    assert not out.exists()


def run_cli(*argv: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "segkit", "refine", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_command_line(tmp_path):
    photo, rough, _ = two_halves(tmp_path)
    out = tmp_path / "cli.png"
    done = run_cli(photo, rough, "--out", out, "--postprocessor", "densecrf_torch")
    assert done.returncode == 0, done.stderr
    assert out.exists() and str(out) in done.stdout
    failed = run_cli(photo, tmp_path / "missing.png", "--out", out)
    assert failed.returncode != 0
    assert failed.stderr.strip().startswith("error:") and "not found" in failed.stderr
    assert "Traceback" not in failed.stderr
