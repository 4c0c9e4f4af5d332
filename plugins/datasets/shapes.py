"""Drawing shapes on cluttered, textured backgrounds: the pictures of ``synthetic``.

The class is carried by the shape only, never by the colour or the texture.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw
from segkit_plugins.datasets import SHAPES


def _polygon(center: tuple[float, float], radius: float, angle: float, points: int) -> list:
    cy, cx = center
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * k / points),
         cy + radius * math.sin(angle + 2 * math.pi * k / points))
        for k in range(points)
    ]  # fmt: skip


def _rotated(center: tuple[float, float], corners: list, angle: float) -> list:
    cy, cx = center
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners]


# Each shape has about the same area (2 to 2.4 r²) so that no class dominates the pixels;
# EXTENT is how far it reaches from its centre, in units of r.
EXTENT = {"circle": 0.8, "square": 1.0, "triangle": 1.24, "cross": 1.07, "ring": 0.92, "star": 1.2}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, center: tuple, r: float, angle: float):
    cy, cx = center
    if shape == "circle":
        radius = EXTENT["circle"] * r
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=1)
    elif shape == "ring":
        outer, inner = EXTENT["ring"] * r, 0.5 * EXTENT["ring"] * r
        draw.ellipse((cx - outer, cy - outer, cx + outer, cy + outer), fill=1)
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    elif shape == "square":
        draw.polygon(_polygon(center, r, angle, 4), fill=1)
    elif shape == "triangle":
        draw.polygon(_polygon(center, EXTENT["triangle"] * r, angle, 3), fill=1)
    elif shape == "cross":
        arm, half = r, 0.36 * r  # arms wide enough to survive a stride-8 head
        corners = [
            (half, -arm), (half, -half), (arm, -half), (arm, half), (half, half), (half, arm),
            (-half, arm), (-half, half), (-arm, half), (-arm, -half), (-half, -half), (-half, -arm),
        ]  # fmt: skip
        draw.polygon(_rotated(center, corners, angle), fill=1)
    elif shape == "star":
        outer = EXTENT["star"] * r
        tips = _polygon(center, outer, angle, 5)
        valleys = _polygon(center, 0.5 * outer, angle + math.pi / 5, 5)
        draw.polygon([p for pair in zip(tips, valleys, strict=True) for p in pair], fill=1)


def _texture(rng: np.random.Generator, height: int, width: int, smooth: bool) -> np.ndarray:
    """A height×width×3 float texture blending two colours drawn uniformly from the RGB cube.

    Every region draws its colours from that same law, so colour says nothing about the
    class.  Backgrounds may also be striped or strongly blotched; shapes (``smooth``) are
    flat or softly blotched, so that their outline, not their inside, is what stands out.
    """
    first, second = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(2 if smooth else 3)
    if kind == 0:  # flat colour with a soft shading ramp
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        direction = rng.uniform(0, 2 * math.pi)
        ramp = (xx * math.cos(direction) + yy * math.sin(direction)) / max(height, width)
        weight = 0.25 * (ramp - ramp.mean())
    elif kind == 1:  # blotches: coarse noise, smoothly enlarged
        cells = rng.random((int(rng.integers(3, 7)), int(rng.integers(3, 7)))).astype(np.float32)
        weight = np.asarray(Image.fromarray(cells, "F").resize((width, height), Image.BILINEAR))
        if smooth:
            weight = 0.35 * weight
    else:  # stripes of random angle, period and sharpness
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        direction = rng.uniform(0, math.pi)
        period = rng.uniform(5, 18)
        wave = np.sin(
            (xx * math.cos(direction) + yy * math.sin(direction)) * (2 * math.pi / period)
            + rng.uniform(0, 2 * math.pi)
        )
        weight = np.clip(0.5 + rng.uniform(0.5, 3) * wave, 0, 1)
    return first + weight[..., None] * (second - first)


def _clutter(rng: np.random.Generator, canvas: Image.Image) -> None:
    """Background distractors: thin lines and small blobs, far smaller than any shape."""
    draw = ImageDraw.Draw(canvas)
    width, height = canvas.size
    for _ in range(int(rng.integers(0, 5))):
        x0, x1 = rng.uniform(0, width, 2)
        y0, y1 = rng.uniform(0, height, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 6))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(1.5, 4.5, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)


def render_shapes(
    rng: np.random.Generator,
    num_classes: int,
    min_size: int,
    max_size: int,
    max_objects: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image (H×W×3 uint8) and its mask (H×W uint8) drawn from ``rng``."""
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    short = min(height, width)
    canvas = Image.fromarray(
        np.clip(_texture(rng, height, width, smooth=False), 0, 255).astype(np.uint8)
    )
    _clutter(rng, canvas)
    image = np.array(canvas)
    mask = np.zeros((height, width), dtype=np.uint8)

    placed: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(1, num_classes))
        shape = SHAPES[label - 1]
        angle = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(0.17, 0.28) * short
        for _attempt in range(12):
            reach = EXTENT[shape] * r + 1
            if 2 * reach < short:
                cy, cx = rng.uniform(reach, height - reach), rng.uniform(reach, width - reach)
                if all(math.hypot(cy - y, cx - x) > reach + e + 3 for y, x, e in placed):
                    break
            r = max(0.9 * r, 0.15 * short)
        else:
            continue  # no room left for another shape
        placed.append((cy, cx, reach))

        top, left = max(0, int(cy - reach) - 1), max(0, int(cx - reach) - 1)
        bottom, right = min(height, int(cy + reach) + 2), min(width, int(cx + reach) + 2)
        stencil = Image.new("L", (right - left, bottom - top), 0)
        _draw_shape(ImageDraw.Draw(stencil), shape, (cy - top, cx - left), r, angle)
        inside = np.asarray(stencil, dtype=bool)
        under = image[top:bottom, left:right][inside].astype(np.float32).mean(0)
        for _tries in range(8):  # a shape must stand out from what it covers
            texture = _texture(rng, bottom - top, right - left, smooth=True)
            if np.linalg.norm(texture[inside].mean(0) - under) > 60:
                break
        image[top:bottom, left:right][inside] = np.clip(texture[inside], 0, 255)
        mask[top:bottom, left:right][inside] = label

    noisy = image + rng.normal(0, rng.uniform(2, 8), image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).round().astype(np.uint8), mask
