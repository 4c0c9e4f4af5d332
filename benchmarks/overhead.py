"""What segkit's plugin assembly costs: segkit-built models against the same nets written plainly.

FCN-8s on VGG16 (Long, Shelhamer & Darrell, CVPR 2015) and DeepLab-LargeFOV on
DeepLab's VGG16 (Chen et al., ICLR 2015), 21 classes, are built by segkit from a
config and written again below as one plain ``nn.Module`` each, layer by layer as
the papers' Caffe nets have them (no segkit inside).  segkit's weights are copied
into the plain nets, their outputs and gradients compared, and then forward +
backward on one fixed input is timed in interleaved rounds (segkit, plain, segkit,
plain ...): the ratio segkit / plain of each round's pair, and its median, is what
the table reports.  The models are in train mode (dropout on) while timed.  Below
the table, the ATen operations of one forward + backward of each model (recorded
with their tensor shapes) are compared: where none differ, segkit costs only the
Python that wires its parts together.

The third case, FCN-8s on timm's ConvNeXt-T (``timm`` backbone, ``interpolate``
upsampler), is compared with timm's own ``features_only`` model plus the FCN-8s
layers written out with crops worked out by hand (``PlainTimmFCN8s``).

DeepLab's bilinear upsampling with aligned corners lands exactly on the input for
sizes ``8k + 1`` (321, 513), where segkit needs no border padding; the DeepLab input
is therefore ``--size`` rounded up to the next such size.  FCN takes any size.

    python benchmarks/overhead.py [--device cpu] [--rounds 10] [--size 224] [--threads 2]

Exits with status 1 when outputs differ by more than 1e-5 or gradients disagree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

OUTPUT_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-4  # relative to each parameter's largest gradient
NUM_CLASSES = 21

#: VGG16's convolutions ("configuration D") as the papers' Caffe nets name them.
VGG16_BLOCKS = (
    (("conv1_1", 3, 64), ("conv1_2", 64, 64)),
    (("conv2_1", 64, 128), ("conv2_2", 128, 128)),
    (("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256)),
    (("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512)),
    (("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)),
)


class PlainFCN8s(nn.Module):
    """FCN-8s (voc-fcn8s): VGG16 with conv1_1 padded by 100, skips from pool4 and pool3."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        for block in VGG16_BLOCKS:
            for name, cin, cout in block:
                self.convs[name] = nn.Conv2d(cin, cout, 3, padding=100 if name == "conv1_1" else 1)
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
        self.score_pool4 = nn.Conv2d(512, num_classes, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
        self.score_pool3 = nn.Conv2d(256, num_classes, 1)
        self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, bias=False)
        self.upscore8.weight.requires_grad_(False)  # FCN keeps the last upsampling fixed

    def forward(self, images: Tensor) -> Tensor:
        x = images
        pools = []
        for block in VGG16_BLOCKS:
            for name, _, _ in block:
                x = F.relu(self.convs[name](x), inplace=True)  # in place, as Caffe's ReLU
            x = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
            pools.append(x)
        x = F.dropout(F.relu(self.fc6(x), inplace=True), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x), inplace=True), 0.5, self.training)
        upscore2 = self.upscore2(self.score_fr(x))
        score_pool4c = _crop(self.score_pool4(pools[3]), 5, upscore2)
        upscore_pool4 = self.upscore_pool4(upscore2 + score_pool4c)
        score_pool3c = _crop(self.score_pool3(pools[2]), 9, upscore_pool4)
        upscore8 = self.upscore8(upscore_pool4 + score_pool3c)
        return _crop(upscore8, 31, images)


def _crop(x: Tensor, offset: int, like: Tensor) -> Tensor:
    """Caffe's Crop layer: ``x`` from ``offset``, to the height and width of ``like``."""
    h, w = like.shape[-2:]
    return x[..., offset : offset + h, offset : offset + w]


class PlainDeepLabLargeFOV(nn.Module):
    """DeepLab-LargeFOV: VGG16 with 3x3 pools (stride 1 from pool4), conv5 and fc6 dilated."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        for block in VGG16_BLOCKS:
            for name, cin, cout in block:
                dilation = 2 if name.startswith("conv5") else 1
                self.convs[name] = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=12, dilation=12)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.fc8 = nn.Conv2d(1024, num_classes, 1)

    def forward(self, images: Tensor) -> Tensor:
        x = images
        for index, block in enumerate(VGG16_BLOCKS):
            for name, _, _ in block:
                x = F.relu(self.convs[name](x), inplace=True)
            x = F.max_pool2d(x, 3, stride=2 if index < 3 else 1, padding=1, ceil_mode=True)
        x = F.dropout(F.relu(self.fc6(x), inplace=True), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x), inplace=True), 0.5, self.training)
        scores = self.fc8(x)
        # Caffe's Interp layer: bilinear, score pixel i on image pixel 8 i.
        return F.interpolate(scores, size=images.shape[-2:], mode="bilinear", align_corners=True)


class PlainTimmFCN8s(nn.Module):
    """FCN-8s on timm's ConvNeXt-T features, with the crops worked out by hand.

    ConvNeXt's maps at strides 8, 16 and 32 lie on input pixels ``8 i + 3.5``,
    ``16 i + 7.5`` and ``32 i + 15.5`` (4x4 patch stem, 2x2 downsamplings).  Each 2x
    upsampling (kernel 4, stride 2) puts score ``i`` on index ``2 i + 1.5``: the scores
    then lie on ``16 j - 8.5`` and ``8 j - 20.5``, so the pool4-like skip starts at
    (-8.5 - 7.5) / 16 = -1 and the pool3-like one at (-20.5 - 3.5) / 8 = -3: both are
    padded (border replicated).  The final bilinear x8 puts score ``i`` on index
    ``8 i + 3.5``, and input pixel ``8 i - 20.5`` lies there: index ``y + 24`` is input
    pixel ``y``, so the window starts at 24.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model("convnext_tiny", features_only=True)
        self.score_fr = nn.Conv2d(768, num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
        self.score_pool4 = nn.Conv2d(384, num_classes, 1)
        self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
        self.score_pool3 = nn.Conv2d(192, num_classes, 1)

    def forward(self, images: Tensor) -> Tensor:
        _, stride8, stride16, stride32 = self.encoder(images)
        upscore2 = self.upscore2(self.score_fr(stride32))
        upscore_pool4 = self.upscore_pool4(
            upscore2 + _window(self.score_pool4(stride16), -1, upscore2)
        )
        scores = upscore_pool4 + _window(self.score_pool3(stride8), -3, upscore_pool4)
        h, w = scores.shape[-2:]
        scores = F.interpolate(scores, size=(8 * h, 8 * w), mode="bilinear", align_corners=False)
        return _window(scores, 24, images)


def _window(x: Tensor, start: int, like: Tensor) -> Tensor:
    """``x`` from ``start`` (negative: border replicated first) to the size of ``like``."""
    h, w = like.shape[-2:]
    before = max(0, -start)
    right = max(0, start + w - x.shape[-1])
    bottom = max(0, start + h - x.shape[-2])
    if before or right or bottom:
        x = F.pad(x, (before, right, before, bottom), mode="replicate")
    return x[..., start + before : start + before + h, start + before : start + before + w]


# -- segkit's models and the weight copy ------------------------------------------------


def segkit_model(backbone: str | dict, head: str, upsampler: dict) -> nn.Module:
    from segkit import build_model
    from segkit.core.config import config_from_dict

    model = {"backbone": backbone, "head": head, "upsampler": upsampler}
    return build_model(config_from_dict({"model": {**model, "num_classes": NUM_CLASSES}}))


def convs_of(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def copy_layer(source: nn.Module, target: nn.Module) -> None:
    with torch.no_grad():
        for name, param in source.named_parameters(recurse=False):
            getattr(target, name).copy_(param)


Pairs = list[tuple[nn.Module, nn.Module]]


def fcn8s_pair() -> tuple[nn.Module, nn.Module, Pairs]:
    segkit = segkit_model("vgg16", "fcn8s", {"name": "transposed_bilinear"})
    plain = PlainFCN8s(NUM_CLASSES)
    head = segkit.head
    # FCN starts its score layers at zero; random ones make the comparison mean something.
    for layer in [head.score_fr, *head.score_skip]:
        nn.init.normal_(layer.weight, std=0.01)
        nn.init.normal_(layer.bias, std=0.01)
    pairs = list(zip(convs_of(segkit.backbone.features), plain.convs.values(), strict=True))
    pairs += [
        (segkit.backbone.classifier[0], plain.fc6),
        (segkit.backbone.classifier[3], plain.fc7),
        (head.score_fr, plain.score_fr),
        (head.upscore[0], plain.upscore2),
        (head.score_skip[0], plain.score_pool4),
        (head.upscore[1], plain.upscore_pool4),
        (head.score_skip[1], plain.score_pool3),
        (segkit.upsampler, plain.upscore8),
    ]
    for source, target in pairs:
        copy_layer(source, target)
    return segkit, plain, pairs


def largefov_pair() -> tuple[nn.Module, nn.Module, Pairs]:
    segkit = segkit_model(
        "deeplab_vgg16", "deeplab_largefov", {"name": "interpolate", "align_corners": True}
    )
    plain = PlainDeepLabLargeFOV(NUM_CLASSES)
    pairs = list(zip(convs_of(segkit.backbone.features), plain.convs.values(), strict=True))
    pairs += [(segkit.head.fc6, plain.fc6), (segkit.head.fc7, plain.fc7)]
    pairs += [(segkit.head.fc8, plain.fc8)]
    for source, target in pairs:
        copy_layer(source, target)
    return segkit, plain, pairs


def timm_fcn8s_pair() -> tuple[nn.Module, nn.Module, Pairs]:
    segkit = segkit_model(
        {"name": "timm", "model": "convnext_tiny"}, "fcn8s", {"name": "interpolate"}
    )
    plain = PlainTimmFCN8s(NUM_CLASSES)
    plain.encoder.load_state_dict(segkit.backbone.body.state_dict())
    head = segkit.head
    for layer in [head.score_fr, *head.score_skip]:
        nn.init.normal_(layer.weight, std=0.01)
        nn.init.normal_(layer.bias, std=0.01)
    pairs: Pairs = [
        (head.score_fr, plain.score_fr),
        (head.upscore[0], plain.upscore2),
        (head.score_skip[0], plain.score_pool4),
        (head.upscore[1], plain.upscore_pool4),
        (head.score_skip[1], plain.score_pool3),
    ]
    pairs += [
        (a, b)
        for a, b in zip(segkit.backbone.body.modules(), plain.encoder.modules(), strict=True)
        if any(True for _ in a.parameters(recurse=False))
    ]
    for source, target in pairs:
        copy_layer(source, target)
    return segkit, plain, pairs


# -- checks and timing ------------------------------------------------------------------


def step(model: nn.Module, images: Tensor, target: Tensor) -> Tensor:
    model.zero_grad(set_to_none=True)
    logits = model(images)
    F.cross_entropy(logits, target).backward()
    return logits


def compare(
    segkit: nn.Module, plain: nn.Module, pairs: Pairs, images: Tensor, target: Tensor
) -> dict:
    """Outputs (max abs difference) and gradients (max difference / largest gradient), eval mode."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        out_segkit = step(segkit.eval(), images, target).detach()
        out_plain = step(plain.eval(), images, target).detach()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    gradients = 0.0
    for layer, twin_layer in pairs:
        for name, param in layer.named_parameters(recurse=False):
            twin = getattr(twin_layer, name)
            assert param.requires_grad == twin.requires_grad, name
            if param.requires_grad:
                scale = twin.grad.abs().max().clamp_min(1e-12)
                gradients = max(gradients, ((param.grad - twin.grad).abs().max() / scale).item())
    covered = sum(p.numel() for layer, _ in pairs for p in layer.parameters(recurse=False))
    return {
        "shape": tuple(out_segkit.shape),
        "output": (out_segkit - out_plain).abs().max().item(),
        "scale": out_plain.abs().max().item(),
        "gradients": gradients,
        # Every parameter of both models is in a compared pair.
        "all_paired": covered == _count(segkit) == _count(plain),
    }


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class OpRecorder(TorchDispatchMode):
    """Counts the ATen operations (with their tensor shapes) that run, backward included."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[tuple[str, tuple]] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = tuple(tuple(a.shape) for a in args if isinstance(a, Tensor))
        self.ops[(str(func.overloadpacket), shapes)] += 1
        return func(*args, **(kwargs or {}))


def op_difference(
    segkit: nn.Module, plain: nn.Module, images: Tensor, target: Tensor
) -> tuple[int, int, str]:
    """Operations of one forward + backward of each model, and those not common to both."""
    counts = []
    for model in (segkit.train(), plain.train()):
        with OpRecorder() as recorder:
            step(model, images, target)
        counts.append(recorder.ops)
    extra = [
        f"{sign}{n} {op}{list(shapes)}"
        for sign, diff in (("segkit +", counts[0] - counts[1]), ("plain +", counts[1] - counts[0]))
        for (op, shapes), n in sorted(diff.items())
    ]
    return sum(counts[0].values()), sum(counts[1].values()), "; ".join(extra) or "none"


def timed(run: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``run``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(
    segkit: nn.Module, plain: nn.Module, images: Tensor, target: Tensor, rounds: int, warmup: int
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Forward + backward times of segkit then plain in each round, in train mode."""
    segkit.train()
    plain.train()
    for _ in range(warmup):
        step(segkit, images, target)
        step(plain, images, target)
    return [
        (
            timed(lambda: step(segkit, images, target), images.device),
            timed(lambda: step(plain, images, target), images.device),
        )
        for _ in range(rounds)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default_device, help=f"default: {default_device}")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--size", type=int, default=224, help="square input size")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--models", nargs="+", default=["fcn8s", "largefov", "timm"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    console = Console()
    if not console.is_terminal:
        console.width = 150

    builders = {
        "fcn8s": ("FCN-8s, vgg16", fcn8s_pair, args.size),
        "largefov": (
            "DeepLab-LargeFOV, deeplab_vgg16",
            largefov_pair,
            _eight_k_plus_one(args.size),
        ),
        "timm": ("FCN-8s, timm convnext_tiny", timm_fcn8s_pair, args.size),
    }
    table = Table(
        title=f"forward + backward, segkit vs plain ({device}, {args.threads} threads, "
        f"{args.rounds} interleaved rounds)",
        caption="ms: median wall time of a forward + backward; ratio: median of the rounds' "
        "segkit/plain wall times, IQR: their quartiles; CPU-time ratio: the same with process "
        "CPU time, which waiting for a shared core does not inflate; Δ grad: relative to "
        "each parameter's largest gradient",
    )
    for column in (
        "model",
        "input",
        "params",
        "max |Δ out|",
        "max Δ grad",
        "segkit ms",
        "plain ms",
        "ratio",
        "ratio IQR",
        "CPU-time ratio",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    failed = False
    notes = []
    for key in args.models:
        title, build, size = builders[key]
        torch.manual_seed(0)
        segkit, plain, pairs = build()
        segkit, plain = segkit.to(device), plain.to(device)
        generator = torch.Generator().manual_seed(1)
        images = torch.randn(1, 3, size, size, generator=generator).to(device)
        target = torch.randint(NUM_CLASSES, (1, size, size), generator=generator).to(device)
        check = compare(segkit, plain, pairs, images, target)
        ok = (
            check["all_paired"]
            and check["output"] <= OUTPUT_TOLERANCE
            and check["gradients"] <= GRADIENT_TOLERANCE
        )
        failed |= not ok
        ops_segkit, ops_plain, ops_differing = op_difference(segkit, plain, images, target)
        notes.append(
            f"{title}: {ops_segkit} ATen ops (segkit) vs {ops_plain} (plain) per forward + "
            f"backward; not in both: {ops_differing}"
        )
        times = interleaved(segkit, plain, images, target, args.rounds, args.warmup)
        ratios = [s[0] / p[0] for s, p in times]
        cpu_ratios = [s[1] / p[1] for s, p in times]
        table.add_row(
            title,
            f"1×3×{size}×{size}",
            f"{_count(segkit):,}",
            f"{check['output']:.2e} (of {check['scale']:.2g})",
            f"{check['gradients']:.2e}",
            f"{1000 * statistics.median(s[0] for s, _ in times):.0f}",
            f"{1000 * statistics.median(p[0] for _, p in times):.0f}",
            f"{statistics.median(ratios):.3f}",
            _quartiles(ratios),
            f"{statistics.median(cpu_ratios):.3f}" if device.type == "cpu" else "-",
            style="" if ok else "red",
        )
        del segkit, plain, pairs
    console.print(table)
    for note in notes:
        console.print(note, highlight=False, markup=False)
    if failed:
        console.print("[red]outputs or gradients differ beyond tolerance[/]")
        return 1
    return 0


def _quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return f"{low:.3f}-{high:.3f}"


def _eight_k_plus_one(size: int) -> int:
    return size + (1 - size) % 8


if __name__ == "__main__":
    sys.exit(main())
