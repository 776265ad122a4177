"""Stroke-drawn digits, for tests, demos and benchmarks of the collect app.

``PATHS[d]`` is digit ``d`` as pen strokes (lists of points in a unit square, y down), the
way a person draws it on the page. :func:`digit_png` renders one like the page's canvas
does (dark ink on white, round pen); a browser test moves the mouse along the same points.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 16) -> Stroke:
    """Points on an ellipse from angle ``a0`` to ``a1`` (degrees, 0 = right, 90 = down)."""
    return [
        (
            cx + rx * math.cos(math.radians(a0 + (a1 - a0) * i / n)),
            cy + ry * math.sin(math.radians(a0 + (a1 - a0) * i / n)),
        )
        for i in range(n + 1)
    ]


PATHS: dict[int, list[Stroke]] = {
    0: [_arc(0.5, 0.5, 0.22, 0.32, -90, 270, 24)],
    1: [[(0.38, 0.3), (0.52, 0.18), (0.52, 0.82)]],
    2: [[*_arc(0.5, 0.36, 0.2, 0.18, 200, 360, 10), (0.66, 0.46), (0.3, 0.82), (0.72, 0.82)]],
    3: [_arc(0.48, 0.34, 0.19, 0.16, 210, 450, 12) + _arc(0.48, 0.66, 0.21, 0.17, -90, 150, 12)],
    4: [[(0.6, 0.82), (0.6, 0.18), (0.28, 0.62), (0.74, 0.62)]],
    5: [[(0.68, 0.2), (0.36, 0.2), (0.33, 0.48), *_arc(0.48, 0.63, 0.2, 0.19, 225, 500, 14)]],
    6: [[(0.64, 0.2), (0.42, 0.4), *_arc(0.5, 0.64, 0.19, 0.18, 200, 560, 18)]],
    7: [[(0.28, 0.2), (0.72, 0.2), (0.44, 0.82)], [(0.4, 0.5), (0.64, 0.5)]],
    8: [
        _arc(0.5, 0.33, 0.16, 0.14, 90, 450, 16),
        _arc(0.5, 0.66, 0.2, 0.17, -90, 270, 16),
    ],
    9: [[*_arc(0.5, 0.36, 0.18, 0.16, 0, 360, 16), (0.68, 0.36), (0.64, 0.82)]],
}


def jittered(digit: int, seed: int, amount: float = 0.03) -> list[Stroke]:
    """``PATHS[digit]`` with every point moved by up to ``amount`` (a new hand each seed)."""
    rng = np.random.default_rng(seed)
    shift = rng.uniform(-amount, amount, size=2)
    out = []
    for stroke in PATHS[digit]:
        noise = rng.uniform(-amount / 2, amount / 2, size=(len(stroke), 2))
        out.append(
            [
                (x + shift[0] + dx, y + shift[1] + dy)
                for (x, y), (dx, dy) in zip(stroke, noise, strict=True)
            ]
        )
    return out


def render(strokes: list[Stroke], size: int = 280, width: int = 18, ink: int = 20) -> Image.Image:
    """Draw ``strokes`` with a round pen, dark ``ink`` on white (what the page saves)."""
    im = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(im)
    for stroke in strokes:
        pts = [(x * size, y * size) for x, y in stroke]
        draw.line(pts, fill=ink, width=width, joint="curve")
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=ink)
    return im


def digit_png(digit: int, seed: int | None = None, **kwargs: int) -> bytes:
    """PNG bytes of ``digit`` drawn with a pen (jittered by ``seed`` when given)."""
    strokes = PATHS[digit] if seed is None else jittered(digit, seed)
    buf = io.BytesIO()
    render(strokes, **kwargs).save(buf, format="PNG")
    return buf.getvalue()


def mouse_draw(page: Any, selector: str, strokes: list[Stroke], steps: int = 6) -> None:
    """Draw ``strokes`` on the element ``selector`` with real mouse events (a Playwright page).

    Each stroke is one press, moves along its points (``steps`` pointer events per segment)
    and one release, as a person drawing with a mouse.
    """
    box = page.locator(selector).bounding_box()
    if box is None:
        raise RuntimeError(f"{selector} is not visible")
    for stroke in strokes:
        pts = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*pts[0])
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(x, y, steps=steps)
        page.mouse.up()
