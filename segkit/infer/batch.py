"""Many images at once: file names, folders and glob patterns, batched by size."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from segkit.core.errors import DataError

#: Files a folder is searched for (lower-cased suffixes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """The image files ``inputs`` name: files as given, a folder's images (sorted, not
    recursive) and the files a glob pattern (``photos/*.jpg``, ``**`` recursive) matches.

    Each input must yield at least one file; a file named twice is kept once.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DataError(
                    f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                    f"point at the folder that holds them, or use a glob such as '{path}/**/*.jpg'"
                )
        elif path.is_file():
            images = [path]
        elif path.exists():
            raise DataError(
                f"{path} is neither an image file nor a folder (a device, pipe or socket); "
                f"give image files, folders or glob patterns"
            )
        elif glob.has_magic(str(item)):
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            images = [p for p in matches if p.is_file()]
            if not images:
                raise DataError(f"no file matches the pattern '{item}'; check the pattern")
        else:
            raise DataError(f"image not found: {path}; give a file, a folder or a glob pattern")
        for image in images:
            found.setdefault(image, None)
    return list(found)


def batches_by_size(sizes: Mapping[Path, tuple[int, int]], batch_size: int) -> Iterator[list[Path]]:
    """The images of ``sizes`` (path -> (width, height)) in batches of at most
    ``batch_size`` images that share one size.

    Batches follow the order in which each size first appears.
    """
    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    groups: dict[tuple[int, int], list[Path]] = {}
    for path, size in sizes.items():
        groups.setdefault(size, []).append(path)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def unique_stems(paths: list[Path]) -> dict[Path, str]:
    """An output name per input: its stem, with the parent folder's name in front when
    two inputs share a stem (``a/x.jpg``, ``b/x.jpg`` -> ``a_x``, ``b_x``).

    Names differing only in case count as the same: they are one file on some systems.
    """
    counts: dict[str, int] = {}
    for path in paths:
        counts[path.stem.casefold()] = counts.get(path.stem.casefold(), 0) + 1
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path in paths:
        shared = counts[path.stem.casefold()] > 1
        name = f"{path.parent.name}_{path.stem}" if shared else path.stem
        base, n = name, 2
        while name.casefold() in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name.casefold())
        names[path] = name
    return names
