"""The tables ``segkit data check`` prints: the splits, the classes, the warnings.

Names from the data (class names, file names) are printed as plain text, never as
console markup.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from segkit.data.checks import DataReport, class_rows

#: Classes listed in the table; a dataset with more lists the largest and counts the rest.
MOST_ROWS = 40


def print_report(
    console: Console, name: str, params: dict, datasets: dict[str, Any], report: DataReport
) -> None:
    root = params.get("root") or params.get("annotations")
    where = f" at {root}" if root else ""
    reference = next(iter(datasets.values()))
    console.print(
        Text(f"dataset '{name}'{where}: {reference.num_classes} classes, splits "
             f"{', '.join(reference.splits) or reference.split}"),
        soft_wrap=True,
    )  # fmt: skip
    console.print(_splits_table(report))
    console.print(_classes_table(report))
    for warning in report.warnings:
        console.print(Text.assemble(("warning: ", "yellow"), warning), soft_wrap=True)


def _splits_table(report: DataReport) -> Table:
    table = Table(title="splits", title_justify="left")
    table.add_column("")
    censuses = report.censuses.values()
    for census in censuses:
        table.add_column(Text(census.split), justify="right")
    read = [
        f"{c.looked_at - len(c.failures)}" + (f" ({len(c.failures)} failed)" if c.failures else "")
        for c in censuses
    ]
    rows = [
        ("images", [str(c.size) for c in censuses]),
        ("read", read),
        ("with masks", [str(c.annotated) for c in censuses]),
        ("sizes (H×W)", [_sizes(c.sizes) for c in censuses]),
        ("image modes", [_modes(c.image_modes) for c in censuses]),
        ("mask files", [_modes(c.mask_modes) for c in censuses]),
        ("labelled pixels", [f"{_share(c.labelled, int(c.pixels.sum()))}" for c in censuses]),
        ("in memory", [_bytes(c.estimated_bytes()) for c in censuses]),
    ]
    for label, cells in rows:
        table.add_row(label, *(Text(cell) for cell in cells))
    return table


def _classes_table(report: DataReport) -> Table:
    rows = class_rows(report)
    shown = rows
    if len(rows) > MOST_ROWS:
        shown = sorted(rows, key=lambda r: -max(s or 0 for s in r[2]))[:MOST_ROWS]
        shown.sort(key=lambda r: r[0])
    title = "classes: share of the labelled pixels"
    if len(shown) < len(rows):
        title += f" (the {len(shown)} largest of {len(rows)})"
    table = Table(title=title, title_justify="left")
    table.add_column("label", justify="right")
    table.add_column("class")
    splits = [c.split for c in report.censuses.values()]
    for split in splits:
        table.add_column(Text(split), justify="right")
    table.add_column(Text(f"masks ({splits[0]})"), justify="right")
    for label, name, shares, masks in shown:
        cells = ["—" if s is None else ("never" if s == 0 else f"{100 * s:.2f}%") for s in shares]
        table.add_row(str(label), Text(name), *(Text(c) for c in cells), str(masks))
    return table


def _sizes(sizes: Counter) -> str:
    if not sizes:
        return "—"
    if len(sizes) == 1:
        (height, width), _ = sizes.most_common(1)[0]
        return f"{height}×{width}"
    areas = sorted(sizes, key=lambda s: s[0] * s[1])
    (h0, w0), (h1, w1) = areas[0], areas[-1]
    return f"{h0}×{w0} .. {h1}×{w1} ({len(sizes)} sizes)"


def _modes(modes: Counter) -> str:
    return ", ".join(f"{mode} {count}" for mode, count in modes.most_common()) or "—"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def _bytes(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"
