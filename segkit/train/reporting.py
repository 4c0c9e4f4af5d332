"""What a run shows and leaves behind beside its checkpoints.

At its start (and when a resumed run ends): the resolved config.  After each epoch:
its line in ``metrics.jsonl``, ``curves.png``, a console line and the plugins'
``on_epoch_end``.  At the end: the final evaluation's ``summary.json`` and table, and
the prediction panels of a few images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from torch import nn

from segkit.core.config import dump_toml
from segkit.core.interrupts import uninterruptible
from segkit.core.outputs import write_text_atomically
from segkit.data.dataset import SegmentationDataset
from segkit.data.files import read_image
from segkit.infer.batch import unique_stems
from segkit.infer.evaluate import Evaluator, metrics_table, summarize
from segkit.infer.pictures import write_prediction
from segkit.infer.postprocess import PostprocessChain
from segkit.infer.segmenter import Segmenter
from segkit.train.context import Run
from segkit.train.curves import write_curves
from segkit.train.records import METRICS_FILE, append_record


class RunReport:
    """Reports ``run``; only rank 0 writes and prints, every process calls the hooks."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def config(self) -> None:
        """The resolved config, as ``config.json`` and ``config.toml``."""
        if self.run.is_main:
            config, folder = self.run.config.to_dict(), self.run.run_dir
            self.run.files.add(
                write_text_atomically(folder / "config.json", json.dumps(config, indent=2)),
                write_text_atomically(folder / "config.toml", dump_toml(config)),
            )

    def epoch(self, record: dict[str, Any]) -> None:
        """The epoch's line, curves and console line, and the plugins' ``on_epoch_end``."""
        run = self.run
        if run.is_main:
            with uninterruptible():  # no half-written line or picture
                append_record(run.run_dir, record)
                write_curves(run.history, run.run_dir / "curves.png")
                run.files.add(run.run_dir / METRICS_FILE, run.run_dir / "curves.png")
            run.console.print(epoch_line(record))
        run.plugins.hook.on_epoch_end(run=run, epoch=record["epoch"], metrics=record)

    def final_evaluation(
        self, evaluator: Evaluator, postprocessors: PostprocessChain
    ) -> dict[str, Any]:
        """Evaluate raw and post-processed; write ``summary.json`` and print the table."""
        run = self.run
        with run.progress() as progress:
            results = evaluator.metrics(
                progress, postprocessors, "final evaluation", evaluator.inference
            )
        summary = summarize(results, postprocessors.names())
        if run.is_main:
            text = json.dumps(summary, indent=2)
            run.files.add(write_text_atomically(run.run_dir / "summary.json", text))
            run.console.print(metrics_table(summary, run.class_names))
        return summary

    def predictions(
        self, model: nn.Module, postprocessors: PostprocessChain, val_set: SegmentationDataset
    ) -> None:
        """Prediction panels of the configured images, or of the first val samples."""
        run = self.run
        cfg = run.config
        segmenter = Segmenter(model, cfg, run.class_names, run.palette, run.device, postprocessors)
        out_dir = run.run_dir / "predictions"
        if cfg.predict.images:
            paths = [Path(p) for p in cfg.predict.images]
            names = unique_stems(paths)  # a/x.png and b/x.png: two panels, not one
            items = [(names[p], read_image(p), None) for p in paths]
        else:
            samples = [val_set[i] for i in range(min(cfg.predict.samples, len(val_set)))]
            items = [(s.name, s.image, s.mask) for s in samples]
        with run.progress(everywhere=True) as progress:
            task = progress.add_task("predicting", total=len(items), info="")
            for name, image, mask in items:
                pair = segmenter.predict_pair(image, postprocess=cfg.predict.postprocess)
                with uninterruptible():  # the files and their record, together
                    written = write_prediction(
                        out_dir, name, pair, run.palette, mask, run.class_names
                    )
                    run.files.add(*written)
                progress.update(task, advance=1)
        run.log(f"predictions written to {escape(str(out_dir))}")


def epoch_line(record: dict[str, Any]) -> str:
    """An epoch's record as one console line."""
    parts = [
        f"epoch {record['epoch']}",
        f"loss {record['loss']:.4f}",
        f"{record['images_per_s']:.1f} img/s",
    ]
    if record.get("unlabelled_images"):
        parts.append(f"{record['unlabelled_images']} crops without labels")
    if "miou" in record and record["miou"] is not None:
        parts.append(f"mIoU {record['miou']:.4f}  pixel acc {record['pixel_acc']:.4f}")
    return "  ".join(parts)
