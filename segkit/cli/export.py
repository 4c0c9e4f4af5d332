"""``segkit export CHECKPOINT --out FILE``: the network as ONNX or TorchScript."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from segkit.cli import terminal
from segkit.cli.arguments import add_checkpoint_arg, add_overwrite_arg, check_writable
from segkit.core.outputs import check_outputs


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export a checkpoint's network to ONNX or TorchScript")
    add_checkpoint_arg(p)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="the file to write (.onnx, or .pt for TorchScript)",
    )
    p.add_argument(
        "--format",
        choices=("onnx", "torchscript"),
        default=None,
        help="default: torchscript for a .pt/.ts file, else onnx",
    )
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    p.add_argument(
        "--postprocess",
        "--crf",
        dest="postprocess",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="post-processors cannot be exported: --no-crf exports the network of a "
        "checkpoint that has them",
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the exported file against PyTorch",
    )
    add_overwrite_arg(p, "an existing --out file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segkit.infer import Segmenter
    from segkit.infer.export import TOLERANCE, ExportError, export, metadata

    plugins = terminal.plugins_for(args)
    fmt = args.format
    if fmt is None:
        fmt = "torchscript" if args.out.suffix.lower() in (".pt", ".ts", ".pth") else "onnx"
    check_writable(args.out, "--out", "model.pt" if fmt == "torchscript" else "model.onnx")
    check_outputs([args.out], [args.checkpoint], args.overwrite)
    segmenter = Segmenter.from_checkpoint(args.checkpoint, "cpu", plugins.registry)
    if segmenter.postprocessors and args.postprocess is not False:
        names = ", ".join(segmenter.postprocessors.names())
        raise ExportError(
            f"the checkpoint's post-processor ({names}) cannot be exported: it runs outside "
            f"the network; add --no-crf to export the network alone"
        )
    data = segmenter.config.data
    info = metadata(segmenter.class_names, data.mean, data.std, segmenter.palette)
    result = export(segmenter.model, args.out, info, fmt, args.opset, check=not args.no_check)
    size = result.size / 2**20
    what = f"ONNX opset {args.opset}" if fmt == "onnx" else "TorchScript"
    report = terminal.console_beside(args.out)
    terminal.say(f"wrote {args.out} ({what}, {size:.1f} MiB)", report)
    if result.max_difference is None:
        reason = "--no-check" if args.no_check else "onnxruntime is not installed"
        message = f"not checked against PyTorch ({reason}; pip install 'segkit[export]')"
        terminal.say(message, report)
        return 0
    sizes = ", ".join(f"{h}×{w} {d:.2g}" for (h, w), d in result.differences.items())
    verdict = "ok" if result.max_difference <= TOLERANCE else f"ABOVE {TOLERANCE:g}"
    terminal.say(
        f"checked with {result.checked_with}: max |logits - PyTorch| {sizes} ({verdict})", report
    )
    return 0 if result.max_difference <= TOLERANCE else 1
