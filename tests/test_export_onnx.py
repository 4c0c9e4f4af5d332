"""ONNX export: dynamic sizes, onnxruntime equal to PyTorch, metadata for a runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segkit.cli import main
from segkit.core.config import config_from_dict
from segkit.infer.export import CHECK_SIZES, export, metadata
from segkit.model.assembly import build_model

from .infer_fixtures import CLASS_NAMES, tiny_checkpoint

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

# FCN-8s on VGG16 (padding 100, crops at odd offsets) and on ResNet-18, kept small.
MODELS = {
    "fcn8s-vgg16": {
        "backbone": {"name": "vgg16", "width": 0.0625},
        "head": "fcn8s",
        "upsampler": "transposed_bilinear",
    },
    "fcn8s-resnet18": {"backbone": "resnet18", "head": "fcn8s", "upsampler": "interpolate"},
}


def run_onnx(path, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images})[0]


def test_export_the_quickstart_kind_of_model(tmp_path, capsys, registry):
    checkpoint = tiny_checkpoint(tmp_path, registry)
    out = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "--out", str(out), "--opset", "17"]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "(ok)" in printed
    graph = onnx.load(str(out))
    props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(props["segkit_class_names"]) == CLASS_NAMES
    assert json.loads(props["segkit_mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(props["segkit_std"]) == pytest.approx([0.229, 0.224, 0.225])
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    from segkit.infer import Segmenter

    model = Segmenter.from_checkpoint(checkpoint, "cpu", registry).model
    images = torch.randn(2, 3, 90, 121)  # a size and batch the export never saw
    with torch.inference_mode():
        expected = model(images).numpy()
    np.testing.assert_allclose(run_onnx(out, images.numpy()), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_export_fcn8s_matches_pytorch(tmp_path, registry, name):
    config = config_from_dict({"model": MODELS[name]}, registry=registry)
    torch.manual_seed(0)
    model = build_model(config, 21, registry).eval()
    with torch.no_grad():  # FCN zero-initialises its score layers: make the logits vary
        for parameter in model.head.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    info = metadata(["c"] * 21, [0.5] * 3, [0.25] * 3, np.zeros((21, 3)))
    result = export(model, tmp_path / "m.onnx", info)
    assert set(result.differences) == set(CHECK_SIZES)  # 333×497 and 64×64
    assert result.max_difference is not None and result.max_difference <= 1e-4
    images = torch.randn(1, 3, 333, 497, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        expected = model(images).numpy()
    assert float(np.abs(expected).max()) > 1e-2  # not a trivially zero output
    actual = run_onnx(tmp_path / "m.onnx", images.numpy())
    assert actual.shape == (1, 21, 333, 497)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)


def test_an_opset_too_old_for_the_network_is_one_line_without_the_graph(tmp_path, capfd, registry):
    checkpoint = tiny_checkpoint(tmp_path, registry)
    out = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "--out", str(out), "--opset", "7"]) == 2
    captured = capfd.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error: the network cannot be exported to ONNX opset 7")
    assert line.endswith("try another --opset or --format torchscript")
    assert not out.exists()


def test_export_into_a_folder_suggests_a_model_file_name(tmp_path, capsys, registry):
    checkpoint = tiny_checkpoint(tmp_path, registry)
    assert main(["export", str(checkpoint), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"give a file name such as {tmp_path / 'model.onnx'}" in " ".join(error.split())
