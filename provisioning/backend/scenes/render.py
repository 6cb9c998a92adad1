"""Deterministic procedural renderer: a complete scene description (+ a variant seed) -> 32x32 RGB.

What this module is for: the training data of the scene generators and of the judge. Each
image is drawn with Pillow's ``ImageDraw`` at 4x (128x128) and box-downsampled to 32x32
(anti-aliasing), then degraded (Gaussian blur, Gaussian pixel noise or clutter specks).
The layout: sky above a horizon and a ground below, per scene (grassland, ocean, desert,
city skyline, snowfield, forest tree line); lighting tints the sky and darkens the ground;
the objects (all of one kind, colour and size: one, two or three of them) stand as a group
at the left, centre or right, each with a dark outline so that every colour is visible on
every ground. ``variant`` seeds the small jitters (group position, size, shade, background
details, degradation pattern): the same description and variant give the same pixels.

Pillow draws the primitives; the scene layouts and icons are this world's own, so they are
written here.

May import: numpy, PIL, scipy.ndimage, ``.world``.
"""
from __future__ import annotations

import numpy as np

from .world import SceneDescription

#: Output side in pixels.
IMAGE_SIZE: int = 32
#: Supersampling factor of the drawing.
_SUPER: int = 4
_S = IMAGE_SIZE * _SUPER

COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "orange": (250, 140, 20), "yellow": (250, 230, 40), "green": (40, 190, 60),
    "blue": (40, 80, 235), "purple": (150, 50, 200), "white": (250, 250, 250), "black": (15, 15, 15),
}
#: (horizon as a share of the height, sky RGB, ground RGB) per scene in daylight.
SCENE_LAYOUT: dict[str, tuple[float, tuple[int, int, int], tuple[int, int, int]]] = {
    "grassland": (0.45, (130, 195, 240), (95, 170, 70)),
    "ocean": (0.40, (160, 205, 245), (25, 90, 160)),
    "desert": (0.50, (175, 215, 240), (225, 195, 130)),
    "city": (0.55, (165, 180, 195), (95, 95, 100)),
    "snowfield": (0.45, (190, 215, 240), (235, 240, 245)),
    "forest": (0.45, (140, 190, 215), (55, 105, 50)),
}
_OUTLINE = (35, 35, 35)
_SIZE_PX = {"small": 23.0, "large": 36.0}
_ANCHOR_X = {"left": 0.22, "centre": 0.5, "right": 0.78}
_COUNT_OFFSETS = {"one": [(0.0, 0.0)], "two": [(-0.62, 0.0), (0.62, 0.0)],
                  "three": [(-0.66, 0.3), (0.66, 0.3), (0.0, -0.6)]}


def _light(rgb, lighting: str, part: str) -> tuple[int, int, int]:
    """Colour under the lighting: ``part`` is ``"sky"``, ``"ground"`` or ``"object"``."""
    c = np.asarray(rgb, dtype=np.float64)
    if lighting == "dusk":
        if part == "sky":
            c = 0.35 * c + 0.65 * np.array([245, 130, 90])
        else:
            c = c * (0.8 if part == "ground" else 0.92) * np.array([1.0, 0.9, 0.8]) + (12 if part == "object" else 0)
    elif lighting == "night":
        if part == "sky":
            c = 0.15 * c + 0.85 * np.array([12, 18, 55])
        elif part == "ground":
            c = c * 0.42 * np.array([0.85, 0.9, 1.2])
        else:
            c = c * 0.82 + 8
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _draw_background(draw, d: SceneDescription, rng: np.random.Generator) -> None:
    horizon, sky, ground = SCENE_LAYOUT[d.scene]
    h = int(_S * horizon)
    sky_c, ground_c = _light(sky, d.lighting, "sky"), _light(ground, d.lighting, "ground")
    draw.rectangle([0, 0, _S, h], fill=sky_c)
    draw.rectangle([0, h, _S, _S], fill=ground_c)
    if d.scene == "ocean":  # lighter wave lines
        wave = _light((90, 150, 210), d.lighting, "ground")
        for k in range(4):
            y = h + 10 + 18 * k + int(rng.integers(-3, 4))
            for x0 in range(int(rng.integers(0, 20)), _S, 40):
                draw.line([x0, y, x0 + 18, y], fill=wave, width=3)
    elif d.scene == "desert":  # dunes
        dune = _light((205, 170, 105), d.lighting, "ground")
        for k in range(2):
            cx = int(rng.integers(0, _S))
            draw.ellipse([cx - 60, h - 10 + 30 * k, cx + 60, h + 30 + 30 * k], fill=dune)
        draw.rectangle([0, h - 12, _S, h - 1], fill=sky_c)
    elif d.scene == "city":  # skyline of buildings
        build = _light((70, 75, 90), d.lighting, "ground")
        x = int(rng.integers(-10, 0))
        while x < _S:
            w, top = int(rng.integers(12, 24)), h - int(rng.integers(12, 40))
            draw.rectangle([x, top, x + w, h], fill=build)
            x += w + int(rng.integers(2, 6))
    elif d.scene == "forest":  # tree line on the horizon
        line = _light((25, 70, 35), d.lighting, "ground")
        x = int(rng.integers(-12, 0))
        while x < _S:
            w = int(rng.integers(12, 20))
            draw.polygon([(x, h + 2), (x + w // 2, h - int(rng.integers(20, 34))), (x + w, h + 2)], fill=line)
            x += w - 3
    elif d.scene == "snowfield":  # soft drifts
        drift = _light((215, 225, 235), d.lighting, "ground")
        for k in range(2):
            cx = int(rng.integers(0, _S))
            draw.ellipse([cx - 50, h + 15 + 35 * k, cx + 50, h + 30 + 35 * k], fill=drift)
    elif d.scene == "grassland":  # tufts
        tuft = _light((75, 145, 55), d.lighting, "ground")
        for _ in range(6):
            x, y = int(rng.integers(0, _S)), int(rng.integers(h + 6, _S))
            draw.line([x, y, x + 4, y - 6], fill=tuft, width=3)


def _draw_object(draw, kind: str, cx: float, cy: float, s: float, fill, lighting: str) -> None:
    """One icon of side ``s`` (supersampled px) centred at ``(cx, cy)``."""
    w = max(2, int(s * 0.09))
    r = s / 2
    if kind == "ball":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=_OUTLINE, width=w)
    elif kind == "box":
        a = 0.85 * r
        draw.rectangle([cx - a, cy - a, cx + a, cy + a], fill=fill, outline=_OUTLINE, width=w)
    elif kind == "tree":
        trunk = _light((110, 70, 30), lighting, "object")
        draw.rectangle([cx - 0.12 * s, cy + 0.1 * s, cx + 0.12 * s, cy + r], fill=trunk, outline=_OUTLINE, width=w)
        draw.polygon([(cx - r, cy + 0.15 * s), (cx, cy - r), (cx + r, cy + 0.15 * s)], fill=fill, outline=_OUTLINE,
                     width=w)
    elif kind == "house":
        draw.rectangle([cx - 0.42 * s, cy - 0.05 * s, cx + 0.42 * s, cy + r], fill=fill, outline=_OUTLINE, width=w)
        draw.polygon([(cx - r, cy - 0.02 * s), (cx, cy - r), (cx + r, cy - 0.02 * s)], fill=fill, outline=_OUTLINE,
                     width=w)
        draw.rectangle([cx - 0.1 * s, cy + 0.2 * s, cx + 0.1 * s, cy + r], fill=_OUTLINE)
    elif kind == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r * 1.1, r * 0.45)
        pts = [(cx + q * np.cos(a), cy - q * np.sin(a)) for q, a in zip(radii, angles)]
        draw.polygon(pts, fill=fill, outline=_OUTLINE, width=w)
    elif kind == "car":
        draw.rectangle([cx - 0.28 * s, cy - 0.38 * s, cx + 0.22 * s, cy - 0.08 * s], fill=fill, outline=_OUTLINE,
                       width=w)
        draw.rectangle([cx - r, cy - 0.1 * s, cx + r, cy + 0.22 * s], fill=fill, outline=_OUTLINE, width=w)
        for wx in (cx - 0.28 * s, cx + 0.28 * s):
            q = 0.14 * s
            draw.ellipse([wx - q, cy + 0.22 * s - q, wx + q, cy + 0.22 * s + q], fill=(20, 20, 20))
    else:
        raise ValueError(f"unknown object {kind!r}")


def _draw_objects(draw, d: SceneDescription, rng: np.random.Generator) -> None:
    s = _SIZE_PX[d.size] * (1 + 0.06 * rng.uniform(-1, 1))
    offsets = _COUNT_OFFSETS[d.count]
    half_w = max(abs(dx) for dx, _ in offsets) * s + s / 2 + 3
    cx = _ANCHOR_X[d.position] * _S + rng.uniform(-4, 4)
    cx = float(np.clip(cx, half_w, _S - half_w))
    cy = 0.7 * _S + rng.uniform(-3, 3)
    shade = np.asarray(COLOUR_RGB[d.colour], dtype=np.float64) + rng.uniform(-12, 12, size=3)
    fill = _light(np.clip(shade, 0, 255), d.lighting, "object")
    for dx, dy in offsets:
        _draw_object(draw, d.object, cx + dx * s, cy + dy * s, s, fill, d.lighting)


def _degrade(img: np.ndarray, degradation: str, rng: np.random.Generator) -> np.ndarray:
    """Apply a degradation to a float image (H, W, 3) in [0, 1]."""
    if degradation == "blur":
        from scipy.ndimage import gaussian_filter

        return gaussian_filter(img, sigma=(1.1, 1.1, 0))
    if degradation == "noise":
        return np.clip(img + rng.normal(0, 0.08, size=img.shape), 0, 1)
    if degradation == "clutter":
        out = img.copy()
        for _ in range(int(rng.integers(10, 16))):
            y, x = int(rng.integers(0, IMAGE_SIZE - 1)), int(rng.integers(0, IMAGE_SIZE - 1))
            out[y:y + 2, x:x + 1 + int(rng.integers(0, 2))] = rng.uniform(0, 1, size=3)
        return out
    return img


def render(description: SceneDescription, variant: int = 0) -> np.ndarray:
    """Render a complete description: ``(32, 32, 3)`` uint8 RGB, deterministic in ``(description, variant)``."""
    from PIL import Image, ImageDraw

    if not description.is_complete():
        missing = [k for k, v in description.__dict__.items() if v is None]
        raise ValueError(f"render needs a complete description; unstated: {', '.join(missing)}")
    key = [int(variant) & 0xFFFFFFFF, *(int(i) for i in description.indices())]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    canvas = Image.new("RGB", (_S, _S))
    draw = ImageDraw.Draw(canvas)
    _draw_background(draw, description, rng)
    _draw_objects(draw, description, rng)
    small = canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    img = np.asarray(small, dtype=np.float64) / 255.0
    img = _degrade(img, description.degradation, rng)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def render_batch(descriptions, variants) -> np.ndarray:
    """Render many: ``(n, 32, 32, 3)`` uint8."""
    return np.stack([render(d, v) for d, v in zip(descriptions, variants)])


def to_model_space(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 ``(n, H, W, 3)`` -> float32 ``(n, 3, H, W)`` in [-1, 1]."""
    return (np.transpose(images_uint8, (0, 3, 1, 2)).astype(np.float32) / 127.5) - 1.0


def from_model_space(images: np.ndarray) -> np.ndarray:
    """float ``(n, 3, H, W)`` in [-1, 1] -> uint8 ``(n, H, W, 3)``."""
    x = np.clip((np.asarray(images, dtype=np.float32) + 1.0) * 127.5, 0, 255)
    return np.round(np.transpose(x, (0, 2, 3, 1))).astype(np.uint8)
