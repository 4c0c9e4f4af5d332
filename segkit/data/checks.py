"""Checks of a dataset's labels before any training: ``segkit data check`` runs them on
every item, ``segkit run`` on an even spread before it creates its run folder.

A *problem* makes a run meaningless (masks that hold one class, a binary mask whose
foreground segkit would read as "ignore", files that cannot be read): ``data check``
exits 2 and ``run`` stops.  A *warning* is worth a look but training can go on (a class
with a handful of pixels, classes that never appear, a mask palette that draws the
classes in another order).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from segkit.data.census import SplitCensus, take_census
from segkit.data.dataset import IGNORE_INDEX, SegmentationDataset

#: Items a run looks at per split: read from files, or drawn by a generated dataset
#: (whose masks come from code, not from files someone saved).
RUN_SAMPLE_FILES = 256
RUN_SAMPLE_GENERATED = 32

#: The share of the pixels below which a label counts as "a handful".
STRAY_SHARE = 1e-4


@dataclass
class Finding:
    problem: bool
    text: str
    #: Classes that never appear: the whole split's matter, said by ``data check`` only.
    absent: bool = False


@dataclass
class DataReport:
    """The census of each split checked (by role: "train", "val") and the findings."""

    class_names: list[str]
    censuses: dict[str, SplitCensus]
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f.text for f in self.findings if f.problem]

    @property
    def warnings(self) -> list[str]:
        return [f.text for f in self.findings if not f.problem]


def check_datasets(
    datasets: dict[str, SegmentationDataset],
    fixes: Collection[str] = (),
    limit: int | None = None,
    evaluates: bool = True,
) -> DataReport:
    """Count and check ``datasets`` (by role, "train" and/or "val").

    ``fixes`` are the dataset's parameters a message may point to (``binary``,
    ``mask_values``); ``limit`` spreads the reading over that many items per split
    (none: every item, and the classes that never appear are listed); ``evaluates``
    says whether the "val" split will be scored.
    """
    reference = datasets.get("train") or next(iter(datasets.values()))
    censuses = {role: take_census(d, limit) for role, d in datasets.items()}
    report = DataReport(list(reference.class_names), censuses)
    binary_seen = False
    for role, census in censuses.items():
        scored = role == "train" or evaluates
        if binary_seen and binary_as_ignore(census):
            continue  # said once: the same masks, the same fix
        binary_seen = binary_seen or binary_as_ignore(census)
        found = _split_findings(census, reference.class_names, fixes, role, scored)
        report.findings += found if limit is None else [f for f in found if not f.absent]
    return report


def check_run_data(
    datasets: dict[str, SegmentationDataset], fixes: Collection[str], evaluates: bool
) -> DataReport:
    """:func:`check_datasets` on an even spread of each split: what a run checks."""
    generated = not any(d.source_files() for d in datasets.values())
    limit = RUN_SAMPLE_GENERATED if generated else RUN_SAMPLE_FILES
    return check_datasets(datasets, fixes, limit, evaluates)


def _split_findings(
    census: SplitCensus, names: list[str], fixes: Collection[str], role: str, scored: bool
) -> list[Finding]:
    split = f"split '{census.split}'"
    found: list[Finding] = []
    if census.failures:
        count = len(census.failures)
        found.append(
            Finding(
                True,
                f"{count} of the {census.looked_at} items of {split} cannot be read: "
                f"{census.failures[0]}" + (" (and more, listed below)" if count > 1 else ""),
            )
        )
    present = census.labels_present()
    if census.looked_at > len(census.failures) and scored:
        if census.annotated == 0:
            found.append(Finding(True, f"{split} has no masks; it cannot be {_use(role)}"))
        elif binary_as_ignore(census):
            found.append(Finding(True, _binary_message(census, split, fixes)))
        elif not present:
            found.append(
                Finding(
                    True,
                    f"the masks of {split} hold no labelled pixel (all are 255 = ignore); "
                    f"it cannot be {_use(role)}: check how the masks were exported",
                )
            )
        elif len(present) == 1 and role == "train":
            label = present[0]
            found.append(
                Finding(
                    True,
                    f"the masks of {split} hold one class only (label {label} "
                    f"'{_name(names, label)}'): a model cannot learn to tell classes apart; "
                    f"check the masks, or how the dataset maps their values",
                )
            )
    found += _stray_labels(census, names, split)
    if census.complete and census.annotated and not binary_as_ignore(census):
        absent = [i for i in range(len(names)) if census.pixels[i] == 0]
        if absent:
            shown = ", ".join(f"{i} '{_name(names, i)}'" for i in absent[:6])
            more = f" and {len(absent) - 6} more" if len(absent) > 6 else ""
            found.append(
                Finding(
                    False,
                    f"{len(absent)} of the {len(names)} classes never appear in {split}: "
                    f"{shown}{more}",
                    absent=True,
                )
            )
    for (label, colour, other), where in list(census.palette_swaps.items())[:3]:
        found.append(
            Finding(
                False,
                f"{where} draws label {label} in {colour}, the colour the dataset gives "
                f"label {other} '{_name(names, other)}': masks are read by index, so if the "
                f"tool numbered the classes in another order, reorder class_names and palette",
            )
        )
    for note, count in census.notes.most_common(3):
        found.append(Finding(False, f"{split}: {note} in {count} item{'s' * (count > 1)}"))
    return found


def _use(role: str) -> str:
    return "trained on" if role == "train" else "scored"


def _name(names: list[str], label: int) -> str:
    return names[label] if 0 <= label < len(names) else f"label {label}"


def binary_as_ignore(census: SplitCensus) -> bool:
    """Whether the masks look binary with the foreground saved as 255.

    255 is segkit's "ignore", so such masks hold one class.  Either nothing but 0 and
    255 is stored, or the other values are a thin fringe of many grey levels (a 0/255
    mask with anti-aliased edges); and the background is not itself a sliver next to
    the 255s (scribble annotations leave most of each image at 255 on purpose).
    """
    pixels = census.pixels
    ignored, background = int(pixels[IGNORE_INDEX]), int(pixels[0])
    between = pixels[1:IGNORE_INDEX]
    fringe = int(between.sum())
    if ignored < 0.001 * max(int(pixels.sum()), 1) or background < 0.1 * ignored:
        return False
    return fringe == 0 or (fringe < 0.25 * ignored and int((between > 0).sum()) >= 8)


def _binary_message(census: SplitCensus, split: str, fixes: Collection[str]) -> str:
    share = census.pixels[IGNORE_INDEX] / max(int(census.pixels.sum()), 1)
    if "binary" in fixes:
        fix = "set data.dataset.binary = true (0 = background, any other value = foreground)"
    elif "mask_values" in fixes:
        fix = "map the values with data.dataset.mask_values = { 0 = 0, 255 = 1 }"
    else:
        fix = "save the foreground as 1: 255 marks pixels to ignore"
    return (
        f"the masks of {split} look binary, saved as 0/255: {share:.1%} of their pixels "
        f"are 255, which segkit reads as 'ignore', leaving class 0 alone to learn; {fix}"
    )


def _stray_labels(census: SplitCensus, names: list[str], split: str) -> list[Finding]:
    """Labels with a handful of pixels in a mask or two: stray values, rarely a class."""
    labelled = census.labelled
    found = []
    for label in census.labels_present():
        pixels, masks = int(census.pixels[label]), int(census.masks_with[label])
        if pixels < STRAY_SHARE * labelled and masks <= max(2, census.annotated // 100):
            found.append(
                Finding(
                    False,
                    f"label {label} '{_name(names, label)}' has {pixels} pixels in {masks} "
                    f"mask{'s' if masks > 1 else ''} of {split} ({census.first_seen[label]}): "
                    f"a stray value? fix those pixels, or set them to 255 to ignore them",
                )
            )
    return found[:5]


def class_rows(report: DataReport) -> list[tuple[int, str, list[float | None], int]]:
    """The class table: label, name, pixel share per split (None: no masks), masks
    holding it in the first split."""
    rows = []
    first = next(iter(report.censuses.values()))
    for label, name in enumerate(report.class_names):
        shares: list[float | None] = []
        for census in report.censuses.values():
            total = census.labelled
            shares.append(float(census.pixels[label]) / total if total else None)
        rows.append((label, name, shares, int(first.masks_with[label])))
    return rows
