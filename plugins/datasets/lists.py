"""What the file-based datasets share: the suffixes they read and split list files."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
MASK_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm"}


def few(names: list[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "")


def read_split_list(path: Path) -> list[str]:
    """Stems listed in a split file: one per line, or DeepLab's ``/JPEGImages/x.jpg ...`` lines."""
    stems = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name = Path(line.split()[0])
            known_suffix = name.suffix.lower() in IMAGE_SUFFIXES | MASK_SUFFIXES
            stems.append(name.stem if known_suffix else name.name)
    return stems
