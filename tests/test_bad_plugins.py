"""One broken third-party plugin never breaks segkit: it is named, the rest still work.

Three kinds of breakage are tried: a plugin that cannot load (wrong hook arguments,
a ``params`` list that is not ``Param``s, a built-in's name taken), a run-event hook
that raises while a run is under way, and model parts that break the hook contract
(caught by the dry run at build time, or at the call for post-processors).
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from segkit.cli import main
from segkit.core import Param, Part, PluginError, SegkitError, hookimpl, load_config, manager
from segkit.core import load_plugins as load
from segkit.infer import PostprocessChain
from segkit.model import FeatureInfo, build_model_from_parts, contracts
from segkit.train import run_config

from .test_plugins import install_fake_distribution
from .tiny import write_tiny_config

# --- plugins that cannot load ---


def plugin(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, hookimpl(function))
    return module


def make_head(backbone, num_classes, depth=2):
    return depth


def heads(register_call):
    """A plugin module whose register_heads makes one call of ``register_call(register)``."""

    def register_heads(register):
        register_call(register)

    return register_heads


GOOD = plugin("good", register_heads=heads(lambda r: r("good_head", make_head)))


def wrong_argument(reg):  # the hook passes ``register``
    reg("never", make_head)


def epoch_end_wanting_more(run, epoch, metrics, stage):
    pass


#: name -> (hooks of the broken plugin, what its status must say)
BROKEN = {
    "hook-argument-renamed": (
        {"register_heads": wrong_argument},
        "its register_heads takes (reg), but segkit passes (register) by name; rename the "
        "arguments to match",
    ),
    "run-hook-extra-argument": (
        {"on_epoch_end": epoch_end_wanting_more},
        "its on_epoch_end takes (run, epoch, metrics, stage), but segkit passes "
        "(run, epoch, metrics) by name",
    ),
    "params-a-single-param": (
        {"register_heads": heads(lambda r: r("h", make_head, params=Param("depth", int)))},
        "head 'h': params must be a list of segkit.Param, got Param",
    ),
    "params-a-string": (
        {"register_heads": heads(lambda r: r("h", make_head, params="depth"))},
        "head 'h': params must be a list of segkit.Param, got str",
    ),
    "params-of-dicts": (
        {"register_heads": heads(lambda r: r("h", make_head, params=[{"name": "depth"}]))},
        "head 'h': params[0] is dict {'name': 'depth'}, not a segkit.Param",
    ),
    "param-type-a-string": (
        {"register_heads": heads(lambda r: r("h", make_head, params=[Param("depth", "int")]))},
        "Param 'depth' has the type 'int', which is not a type",
    ),
    "param-name-a-number": (
        {"register_heads": heads(lambda r: r("h", make_head, params=[Param(3, int)]))},
        "params[0] has the name 3",
    ),
    "factory-not-callable": (
        {"register_heads": heads(lambda r: r("h", 3))},
        "head 'h': the factory must be callable or an import path 'package.module:function', "
        "got int",
    ),
    "factory-not-an-import-path": (
        {"register_heads": heads(lambda r: r("h", "make_head"))},
        "head 'h': the factory must be callable or an import path 'package.module:function', "
        "got 'make_head'",
    ),
    "name-empty": (
        {"register_heads": heads(lambda r: r("", make_head))},
        "the name must be a non-empty string, got ''",
    ),
    "takes-a-builtin-name": (
        {"register_heads": heads(lambda r: r("fcn8s", make_head))},
        "it registers head 'fcn8s', which segkit's built-in plugin 'fcn' already provides",
    ),
    "registration-raises": (
        {"register_heads": heads(lambda r: 1 / 0)},
        "ZeroDivisionError: division by zero",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_plugin_that_cannot_load_is_recorded_and_the_rest_load(case):
    hooks, message = BROKEN[case]
    plugins = load(extra=(plugin("broken", **hooks), GOOD))
    status = next(info.status for info in plugins.infos if info.name == "broken")
    assert status.startswith("failed: ") and message in status, status
    assert status.endswith("it is skipped (--disable-plugin broken silences this)")
    assert "\n" not in status
    assert [info.name for info in plugins.failures()] == ["broken"]
    assert plugins.registry.get("head", "good_head").plugin == "good"
    assert plugins.registry.get("head", "fcn8s").plugin == "fcn"  # the built-in keeps it
    assert "h" not in plugins.registry.names("head")
    assert not plugins.manager.is_registered(plugins.manager.get_plugin("broken"))


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path for fake distributions; the CLI loads the plugins afresh."""
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("SEGKIT_DISABLE_PLUGINS", raising=False)
    monkeypatch.setattr(manager, "_CACHE", {})
    (tmp_path / "site").mkdir()
    yield tmp_path / "site"
    for name in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[name]


BROKEN_SOURCE = """
    from segkit import Param, hookimpl

    @hookimpl
    def register_heads(register):
        register("broken_head", lambda backbone, num_classes, depth: depth, params=["depth"])
"""

FINE_SOURCE = """
    from segkit import hookimpl

    @hookimpl
    def register_heads(register):
        register("fine_head", lambda backbone, num_classes: None, help="a fine head")
"""


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture
def broken_installed(site):
    install_fake_distribution(
        site,
        "fake-mixed",
        {"fake_broken": BROKEN_SOURCE, "fake_fine": FINE_SOURCE},
        {"broken": "fake_broken", "fine": "fake_fine"},
    )
    return site


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_segkit_plugins_lists_the_broken_one_as_broken(broken_installed, capsys):
    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    (warning,) = warnings_in(captured.err)
    assert warning.startswith("warning: plugin 'broken' failed: plugin 'broken': head ")
    assert "params[0] is str 'depth', not a segkit.Param" in warning
    assert warning.endswith("(--disable-plugin broken silences this)")
    assert "│ fine_head " in captured.out and "│ broken_head " not in captured.out
    row = next(line for line in captured.out.splitlines() if "fake-mixed" in line and "│ b" in line)
    assert "failed" in row


def test_every_command_still_works_beside_a_broken_plugin(broken_installed, tmp_path, capsys):
    config = write_tiny_config(tmp_path)
    before = folder_hashes(tmp_path)
    assert main(["config", str(config)]) == 0
    assert len(warnings_in(capsys.readouterr().err)) == 1
    assert main(["--disable-plugin", "broken", "config", str(config)]) == 0
    assert warnings_in(capsys.readouterr().err) == []
    assert folder_hashes(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "hint"), [("brokn", "; did you mean 'broken'?"), ("zzz", " (installed: ")]
)
def test_disabling_a_plugin_that_is_not_installed_says_so(broken_installed, name, hint, capsys):
    assert main(["--disable-plugin", name, "plugins"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: --disable-plugin '{name}': no plugin of that name is ")
    assert hint in lines[0] and "broken" in lines[0] and "fine" in lines[0]


# --- run-event hooks that raise while a run is under way ---


class Recorder:
    """A healthy run-event plugin beside the broken one."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.ended = False

    @hookimpl
    def on_epoch_end(self, epoch):
        self.epochs.append(epoch)

    @hookimpl
    def on_run_end(self, error):
        self.ended = error is None


class FailingLogger:
    """Raises at every epoch's end; its run end must not be called once it failed."""

    __name__ = "flaky_logger"

    def __init__(self) -> None:
        self.calls = 0
        self.ended = False

    @hookimpl
    def on_epoch_end(self, run, epoch, metrics):
        self.calls += 1
        raise ValueError(f"cannot reach the tracking server (epoch {epoch})")

    @hookimpl
    def on_run_end(self, run, summary, error):
        self.ended = True


def test_a_run_event_hook_that_raises_is_reported_once_and_the_run_finishes(tmp_path):
    failing, recorder = FailingLogger(), Recorder()
    plugins = load(extra=(failing, recorder))
    config = load_config(
        write_tiny_config(tmp_path, epochs=2, train_size=2, every=2), (), plugins.registry
    )
    output = io.StringIO()
    summary = run_config(config, tmp_path / "out", plugins, Console(file=output, width=300))
    assert "miou" in summary and (tmp_path / "out" / "last.pt").is_file()
    assert recorder.epochs == [1, 2] and recorder.ended  # the healthy plugin heard everything
    assert failing.calls == 1 and not failing.ended  # skipped from its first failure on
    warnings = [line for line in output.getvalue().splitlines() if "warning:" in line]
    assert warnings == [
        "warning: plugin 'flaky_logger' failed in on_epoch_end (ValueError: cannot reach the "
        "tracking server (epoch 1)); its run events are skipped from now on and the run goes "
        "on (--disable-plugin flaky_logger leaves it out)"
    ]
    assert plugins.event_failures == {
        "flaky_logger": "on_epoch_end: ValueError: cannot reach the tracking server (epoch 1)"
    }


class StoppingLogger:
    """Stops the run on purpose, with a segkit error: that is its one line."""

    @hookimpl
    def on_run_start(self, run):
        raise SegkitError("tracking: the project key is missing; set TRACKING_KEY")


def test_a_run_event_hook_may_stop_the_run_with_a_segkit_error(tmp_path):
    recorder = Recorder()
    plugins = load(extra=(StoppingLogger(), recorder))
    config = load_config(write_tiny_config(tmp_path, train_size=2), (), plugins.registry)
    with pytest.raises(SegkitError, match=r"^tracking: the project key is missing"):
        run_config(config, tmp_path / "out", plugins, Console(file=io.StringIO()))
    assert recorder.epochs == [] and not (tmp_path / "out" / "last.pt").exists()


# --- model parts that break the hook contract ---


class ToyBackbone(nn.Module):
    """Two maps at strides 2 and 4; ``mode`` picks the contract it breaks."""

    def __init__(self, mode: str = "good") -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.mode = mode
        self.feature_info = {"c1": FeatureInfo(4, 2), "c2": FeatureInfo(8, 4)}
        if mode == "no-info":
            del self.feature_info
        elif mode == "info-of-tuples":
            self.feature_info = {"c1": (4, 2), "c2": (8, 4)}
        elif mode == "wrong-channels":
            self.feature_info = {"c1": FeatureInfo(4, 2), "c2": FeatureInfo(16, 4)}
        elif mode == "wrong-stride":
            self.feature_info = {"c1": FeatureInfo(4, 2), "c2": FeatureInfo(8, 8)}

    def forward(self, images):
        c1 = self.bn(self.stem(images))
        c2 = self.down(c1)
        if self.mode == "a-tensor":
            return c2
        if self.mode == "other-names":
            return {"c1": c1, "deep": c2}
        if self.mode == "a-list-of-maps":
            return {"c1": c1, "c2": [c2]}
        if self.mode == "raises":
            raise RuntimeError("expected input of 224×224")
        return {"c1": c1, "c2": c2}


class ToyHead(nn.Module):
    def __init__(self, backbone, num_classes, mode: str = "good") -> None:
        super().__init__()
        self.classify = nn.Conv2d(8, num_classes + (mode == "extra-class"), 1)
        self.mode = mode
        self.stride, self.offset = (2 if mode == "wrong-stride" else 4), 0
        if mode == "no-stride":
            del self.stride

    def forward(self, features):
        scores = self.classify(features["c2"])
        return (scores,) if self.mode == "a-tuple" else scores


class ToyUpsampler(nn.Module):
    def __init__(self, num_classes, stride, offset, mode: str = "good") -> None:
        super().__init__()
        self.mode = mode

    def forward(self, scores, size):
        if self.mode == "half-size":
            size = (size[0] // 2, size[1] // 2)
        return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


def toy_postprocessor(mode: str = "good"):
    def postprocess(probs, images):
        return probs[:, :1] if mode == "one-class" else probs

    return postprocess


MODE = [Param("mode", str, help="which contract to break")]


def register_backbones(register):
    register("toy", ToyBackbone, params=MODE, help="two small maps")


def register_heads(register):
    register("toy_head", ToyHead, params=MODE, help="1×1 classifier")


def register_upsamplers(register):
    register("toy_up", ToyUpsampler, params=MODE, help="bilinear")


def register_postprocessors(register):
    register("toy_post", toy_postprocessor, params=MODE, help="identity")


ACME = plugin(
    "acme",
    register_backbones=register_backbones,
    register_heads=register_heads,
    register_upsamplers=register_upsamplers,
    register_postprocessors=register_postprocessors,
)


@pytest.fixture(scope="module")
def acme():
    plugins = load(extra=(ACME,))
    assert plugins.failures() == []
    return plugins.registry


def build(registry, backbone="good", head="good", upsampler="good", classes=5):
    return build_model_from_parts(
        registry,
        Part("toy", {"mode": backbone}),
        Part("toy_head", {"mode": head}),
        Part("toy_up", {"mode": upsampler}),
        classes,
    )


FIX = "; fix the plugin or leave it out with --disable-plugin acme"
#: (part, mode) -> the message
VIOLATIONS = {
    ("backbone", "no-info"): "plugin acme's backbone 'toy' has no feature_info; declare",
    ("backbone", "info-of-tuples"): "plugin acme's backbone 'toy' declares feature_info['c1'] "
    "= (4, 2), not a segkit.FeatureInfo with positive integer channels and stride",
    ("backbone", "a-tensor"): "plugin acme's backbone 'toy' declares feature maps 'c1', 'c2' but "
    "returns a tensor of shape 1×8×17×24, not a dict of them",
    ("backbone", "other-names"): "plugin acme's backbone 'toy' declares feature maps 'c1', 'c2' "
    "but returns 'c1', 'deep'",
    ("backbone", "a-list-of-maps"): "plugin acme's backbone 'toy' declares feature map 'c2' but "
    "returns a list for it, not an N×C×H×W tensor",
    ("backbone", "wrong-channels"): "plugin acme's backbone 'toy' declares 16 channels for 'c2' "
    "but returns 8 (1×8×17×24)",
    ("backbone", "wrong-stride"): "plugin acme's backbone 'toy' declares stride 8 (offset 0.0) "
    "for 'c2' but returns a 17×24 map for a 67×93 image, where that stride means about 9×12",
    ("backbone", "raises"): "plugin acme's backbone 'toy' fails on a 1×3×67×93 test image "
    "(RuntimeError: expected input of 224×224); parts must take any input size",
    ("head", "extra-class"): "plugin acme's head 'toy_head' returns scores of shape 1×6×17×24 "
    "for one image and 5 classes; expected 1×5×H×W",
    ("head", "a-tuple"): "plugin acme's head 'toy_head' returns a tuple, not N×C×H×W class scores",
    ("head", "no-stride"): "plugin acme's head 'toy_head' declares stride None and offset 0; "
    "a head needs the attributes stride",
    ("head", "wrong-stride"): "plugin acme's head 'toy_head' declares stride 2 (offset 0) but "
    "returns 17×24 scores for a 67×93 image, which then lie over [0, 32], not over [0, 66]",
    ("upsampler", "half-size"): "plugin acme's upsampler 'toy_up' returns a tensor of shape "
    "1×5×33×46 where 1×5×67×93 is due",
}


@pytest.mark.parametrize(("part", "mode"), VIOLATIONS, ids=lambda v: str(v))
def test_a_contract_violation_is_caught_at_build_time(acme, part, mode):
    with pytest.raises(PluginError) as caught:
        build(acme, **{part: mode})
    message = str(caught.value)
    assert message.startswith(VIOLATIONS[part, mode]), message
    assert message.endswith(FIX) and "\n" not in message


def test_a_good_third_party_model_passes_and_the_dry_run_changes_nothing(acme):
    model = build(acme).train()
    model.head.eval()  # a mixed state must come back as it was
    modes = {name: m.training for name, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    owners = {
        kind: contracts.PartOwner(acme.get(kind, name))
        for kind, name in (("backbone", "toy"), ("head", "toy_head"), ("upsampler", "toy_up"))
    }
    contracts.dry_run(model, owners, 5)
    assert {name: m.training for name, m in model.named_modules()} == modes
    state = model.state_dict()
    assert all(torch.equal(state[k], stats[k]) for k in stats)  # BN statistics included
    assert torch.equal(torch.get_rng_state(), rng)
    assert model(torch.randn(2, 3, 40, 51)).shape == (2, 5, 40, 51)


def test_built_in_parts_skip_the_dry_run(registry, monkeypatch):
    def never(*args):
        raise AssertionError("a built-in model was dry-run")

    monkeypatch.setattr("segkit.model.assembly.dry_run", never)
    model = build_model_from_parts(
        registry,
        Part("deeplab_vgg16", {"width": 0.0625}),
        Part("deeplab_largefov", {"fc_channels": 16}),
        Part("interpolate"),
        3,
    )
    assert model(torch.randn(1, 3, 33, 35)).shape == (1, 3, 33, 35)


def test_a_postprocessor_returning_the_wrong_shape_is_named(acme):
    chain = PostprocessChain.from_parts([Part("toy_post", {"mode": "one-class"})], acme)
    probs = torch.full((1, 5, 8, 9), 0.2)
    images = torch.zeros(1, 3, 8, 9, dtype=torch.uint8)
    with pytest.raises(PluginError) as caught:
        chain(probs, images)
    assert str(caught.value) == (
        "post-processor 'toy_post' returns a tensor of shape 1×1×8×9 for probabilities of "
        "shape 1×5×8×9; a post-processor returns probabilities of the shape it is given "
        "(fix the plugin, or run without it: --no-crf)"
    )
    good = PostprocessChain.from_parts([Part("toy_post", {"mode": "good"})], acme)
    assert torch.equal(good(probs, images), probs)


BAD_BACKBONE_SOURCE = """
    import torch
    from torch import nn
    from segkit import hookimpl
    from segkit.model import FeatureInfo

    class Flat(nn.Module):
        feature_info = {"out": FeatureInfo(3, 1)}

        def forward(self, images):
            return images  # a tensor, not {"out": images}

    @hookimpl
    def register_backbones(register):
        register("flat", Flat, help="returns its input")
"""


def test_the_command_line_names_the_plugin_not_an_internal_error(site, tmp_path, capsys):
    install_fake_distribution(
        site, "fake-flat", {"fake_flat": BAD_BACKBONE_SOURCE}, {"flatworks": "fake_flat"}
    )
    config = write_tiny_config(tmp_path)
    text = re.sub(r"(?m)^backbone = .*$", 'backbone = { name = "flat" }', config.read_text())
    config.write_text(text)
    before = folder_hashes(tmp_path)
    assert main(["summary", str(config), "--input", "3x32x32"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [
        "error: plugin flatworks's backbone 'flat' declares feature maps 'out' but returns a "
        "tensor of shape 1×3×67×93, not a dict of them; fix the plugin or leave it out with "
        "--disable-plugin flatworks"
    ]
    assert folder_hashes(tmp_path) == before
