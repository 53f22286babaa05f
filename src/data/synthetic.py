"""Synthetic anomaly-detection dataset in the MVTec AD folder layout.

MVTec AD cannot be downloaded in every environment, and the demo and the tests must not depend on
anything outside the repository. This module draws a small stand-in dataset procedurally: a few
texture and object categories, normal images that vary the way product photos do (texture phase,
colour, brightness, position), and test images with local defects of several kinds whose
ground-truth masks are exact. Everything is deterministic for a seed. It is clearly labelled as
synthetic (``README.txt`` in the root, ``.synthetic.json`` in every category): numbers measured on
it say nothing about performance on MVTec AD.

Layout written for each category (identical to MVTec AD)::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/good/000.png
    <root>/<category>/test/<defect>/000.png
    <root>/<category>/ground_truth/<defect>/000_mask.png    (uint8 0/255, one channel)

Design notes. The consumer is PatchCore with a possibly randomly initialised backbone, which scores
a test patch by its distance to the nearest training patch. Normal images therefore share one
consistent appearance per category (a periodic texture or one centred object), so every normal
patch has close neighbours in the training set, while defects are local, high-contrast and placed
inside the central 224/256 crop that the pipeline keeps. A mask is the set of pixels where the
defective image differs visibly from the same image rendered without the defect; pixels outside
the mask are reset to the clean rendering, so "outside the mask nothing changed" holds exactly.

Command line::

    python -m src.data.synthetic --root data/synthetic [--categories weave tiles] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import cv2
import numpy as np
from scipy import ndimage

from src.cli import run, setup_logging
from src.errors import ConfigError, DatasetError, PatchCoreError

logger = logging.getLogger(__name__)

# Bumped whenever the drawing code changes the pixels, so that a folder written by an older
# version is reported as stale instead of being silently reused.
FORMAT_VERSION = 1
STAMP_NAME = ".synthetic.json"
README_NAME = "README.txt"
GENERATOR_NAME = "patchcore-mindspore src/data/synthetic.py"

# A pixel belongs to a defect when some channel differs from the clean rendering by more than
# this many grey levels (about 3 % of the range: the faintest change a person would still mark).
_MASK_TOLERANCE = 8
# Structuring element that closes pin-holes in masks of blotchy defects (dark texture pixels under
# a stain change less than the tolerance although they are clearly part of the stain).
_MASK_CLOSE_KERNEL = 5
# A defect smaller than this fraction of the image is redrawn (it could have fallen mostly off the
# object); each defect type is designed to be far larger, so retries are rare.
_MIN_DEFECT_FRACTION = 0.002
_MAX_DEFECT_ATTEMPTS = 8
_MIN_IMAGE_SIZE = 64

# Split indices used in the seeds; defect type k of a category uses _FIRST_DEFECT_SPLIT + k.
_SPLIT_TRAIN = 0
_SPLIT_TEST_GOOD = 1
_FIRST_DEFECT_SPLIT = 2


# --------------------------------------------------------------------------------------------
# Specification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and seed of a generated dataset; the same spec always yields byte-identical files.

    Attributes:
        image_size: Side of the square images in pixels (the pipeline resizes to 256 anyway).
        num_train: Defect-free training images per category.
        num_test_good: Defect-free test images per category.
        num_test_per_defect: Test images per defect type (each with a mask).
        seed: Non-negative base seed; every image gets its own stream derived from it.
    """

    image_size: int = 256
    num_train: int = 20
    num_test_good: int = 6
    num_test_per_defect: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        minimums = {
            "image_size": _MIN_IMAGE_SIZE,
            "num_train": 1,
            "num_test_good": 1,
            "num_test_per_defect": 1,
            "seed": 0,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            # bool is an int subclass; True as an image count is surely a mistake.
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(
                    f"SyntheticSpec.{name} must be an integer >= {minimum}, got {value!r}"
                )
            if value < minimum:
                raise ConfigError(
                    f"SyntheticSpec.{name} must be >= {minimum}, got {value}; pass a larger value"
                )


# --------------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------------


@dataclass
class _Scene:
    """A clean rendering plus what defect painters need to know about it.

    Attributes:
        image: float32 (H, W, C) image, C = 3 (BGR) or 1 (grey), nominal range 0..255.
        surface: float32 (H, W) weight in [0, 1] of where surface defects may appear.
        background: For objects, the image without the object (float32, like ``image``).
        foreground: For objects, the object's appearance everywhere (float32, like ``image``).
        cover: For objects, anti-aliased object coverage (float32 (H, W)).
        center: For objects, the object's centre (x, y) in pixels.
        radii: For ring-shaped objects, (inner, outer) radius in pixels.
    """

    image: np.ndarray
    surface: np.ndarray
    background: np.ndarray | None = None
    foreground: np.ndarray | None = None
    cover: np.ndarray | None = None
    center: tuple[float, float] | None = None
    radii: tuple[float, float] | None = None

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def channels(self) -> int:
        return int(self.image.shape[2])


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) as read-only float32 arrays, cached per size."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    xx.setflags(write=False)
    yy.setflags(write=False)
    return xx, yy


def _smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Smooth random field with unit standard deviation and features about ``cell`` px wide."""
    n = max(2, int(np.ceil(size / max(cell, 1.0)))) + 1
    small = rng.standard_normal((n, n)).astype(np.float32)
    field = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _streak_noise(rng: np.random.Generator, size: int, cell_x: float, cell_y: float) -> np.ndarray:
    """Anisotropic smooth noise (unit std): long streaks when ``cell_x`` >> ``cell_y``."""
    nx = max(2, int(np.ceil(size / max(cell_x, 1.0)))) + 1
    ny = max(2, int(np.ceil(size / max(cell_y, 1.0)))) + 1
    small = rng.standard_normal((ny, nx)).astype(np.float32)
    field = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _pixel_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Per-pixel Gaussian sensor noise with standard deviation ``sigma`` grey levels."""
    return rng.standard_normal((size, size)).astype(np.float32) * np.float32(sigma)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """Cubic ease from 0 to 1 on [0, 1] (clamped), for soft but C1-continuous edges."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _colour(channels: int, bgr: Sequence[float]) -> np.ndarray:
    """A BGR colour as a float32 vector for ``channels`` (grey uses ITU-R 601 luma)."""
    if channels == 1:
        b, g, r = bgr
        return np.array([0.114 * b + 0.587 * g + 0.299 * r], np.float32)
    return np.asarray(bgr, np.float32)


def _blend(image: np.ndarray, paint: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite ``paint`` (colour vector or image) over ``image`` with (H, W) ``alpha``."""
    a = alpha[..., None].astype(np.float32)
    return image * (1.0 - a) + paint * a


def _blob_alpha(
    rng: np.random.Generator,
    size: int,
    center: tuple[float, float],
    radius: float,
    *,
    aspect: float = 1.0,
    irregularity: float = 0.25,
    softness: float = 0.15,
) -> np.ndarray:
    """Irregular elliptical blob as a soft alpha map in [0, 1].

    Args:
        rng: Random stream.
        size: Image side.
        center: Blob centre (x, y) in pixels.
        radius: Radius of the equal-area circle in pixels.
        aspect: Ratio of the long to the short axis.
        irregularity: Boundary wobble as a fraction of the radius.
        softness: Width of the soft edge as a fraction of the radius.

    Returns:
        float32 (size, size) alpha map.
    """
    xx, yy = _grid(size)
    angle = rng.uniform(0.0, np.pi)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dx, dy = xx - np.float32(center[0]), yy - np.float32(center[1])
    stretch = np.sqrt(aspect)
    u = (dx * cos + dy * sin) / np.float32(radius * stretch)
    v = (-dx * sin + dy * cos) / np.float32(radius / stretch)
    dist = np.sqrt(u * u + v * v)
    wobble = _smooth_noise(rng, size, cell=max(2.0, 0.6 * radius))
    field = 1.0 - dist + np.float32(irregularity) * wobble
    # Far from the blob the wobble must not spawn detached islands.
    field -= np.maximum(dist - 1.3, 0.0) * 5.0
    return _smoothstep(0.5 + field / np.float32(2.0 * softness)).astype(np.float32)


def _draw_polyline(size: int, points: np.ndarray, thickness: int) -> np.ndarray:
    """Anti-aliased open polyline through (N, 2) float points, as an alpha map in [0, 1]."""
    canvas = np.zeros((size, size), np.uint8)
    # 4 fractional bits keep sub-pixel positions, so curves stay smooth.
    pts = np.round(points * 16.0).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, 255, max(1, int(thickness)), cv2.LINE_AA, 4)
    return canvas.astype(np.float32) / 255.0


def _pick_point(rng: np.random.Generator, scene: _Scene) -> tuple[float, float]:
    """A defect centre: inside the central crop for textures, on the ring for the washer."""
    s = scene.size
    if scene.center is not None and scene.radii is not None:
        inner, outer = scene.radii
        width = outer - inner
        rho = rng.uniform(inner + 0.3 * width, outer - 0.3 * width)
        phi = rng.uniform(0.0, 2.0 * np.pi)
        return scene.center[0] + rho * np.cos(phi), scene.center[1] + rho * np.sin(phi)
    # The pipeline keeps the central 224/256 of the image; stay well inside it.
    x, y = rng.uniform(0.28 * s, 0.72 * s, size=2)
    return float(x), float(y)


def _random_walk(
    rng: np.random.Generator, center: tuple[float, float], length: float, step: float, turn: float
) -> np.ndarray:
    """A wandering path of about ``length`` px centred on ``center``, (N, 2) float points."""
    n = max(3, int(length / step))
    heading = rng.uniform(0.0, 2.0 * np.pi) + np.cumsum(rng.normal(0.0, turn, n))
    steps = np.stack([np.cos(heading), np.sin(heading)], axis=1) * step
    path = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    return path - path.mean(axis=0) + np.asarray(center)


def _normals(path: np.ndarray) -> np.ndarray:
    """Unit normals of a polyline, (N, 2)."""
    tangent = np.gradient(path, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-6)
    return np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def _finish(image: np.ndarray, rng: np.random.Generator, brightness: float = 0.04) -> np.ndarray:
    """Global brightness jitter and slow illumination falloff shared by all renderers."""
    s = image.shape[0]
    gain = np.float32(1.0 + rng.uniform(-brightness, brightness))
    illumination = 1.0 + 0.03 * _smooth_noise(rng, s, cell=s / 2.0)
    return image * gain * illumination[..., None]


# --------------------------------------------------------------------------------------------
# Normal appearance of each category
# --------------------------------------------------------------------------------------------


def _render_weave(rng: np.random.Generator, size: int) -> _Scene:
    """Plain-weave fabric: indigo warp and off-white weft threads, randomly shifted."""
    s = size
    xx, yy = _grid(s)
    period = s / 16.0  # one thread per cell; two feature cells per thread at stride 8
    theta = np.deg2rad(rng.uniform(-1.5, 1.5))
    ox, oy = rng.uniform(0.0, 2.0 * period, size=2)
    cos, sin = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    u = (xx * cos + yy * sin + np.float32(ox)) / np.float32(period)
    v = (-xx * sin + yy * cos + np.float32(oy)) / np.float32(period)
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    warp_on_top = ((iu + iv) % 2) == 0

    gap = 0.16
    across = np.where(warp_on_top, fu, fv)  # position across the visible thread
    along = np.where(warp_on_top, fv, fu)  # position along it
    # Round yarn cross-section; the dark strips between threads are the gaps of the weave.
    profile = np.sin(np.pi * np.clip((across - gap / 2) / (1 - gap), 0.0, 1.0))
    profile = np.maximum(profile, 0.0) ** 0.6  # sin(pi) is -1e-8 in float32
    bulge = 0.8 + 0.2 * np.sin(np.pi * along)  # a thread rises in the middle of its float
    twist = 1.0 + 0.07 * np.sin(2.0 * np.pi * (across + 3.0 * along))  # yarn twist
    # Fine fibres run along each thread, so they vary only across it.
    fibres = np.interp(
        np.where(warp_on_top, u, v).ravel() * 7.0 % 512, np.arange(512), rng.normal(0, 1, 512)
    ).reshape(s, s)
    gains = rng.normal(1.0, 0.035, size=(2, 32))  # slightly uneven threads
    thread_gain = np.where(
        warp_on_top, gains[0][iu.astype(np.int64) % 32], gains[1][iv.astype(np.int64) % 32]
    )
    value = (0.14 + 0.86 * profile * bulge * twist) * (1.0 + 0.05 * fibres) * thread_gain

    jitter = rng.uniform(0.96, 1.04, size=3)
    warp = np.array([140.0, 82.0, 46.0]) * jitter  # BGR indigo
    weft = np.array([192.0, 186.0, 176.0]) * jitter  # BGR off-white
    colour = np.where(warp_on_top[..., None], warp, weft).astype(np.float32)
    image = colour * value[..., None].astype(np.float32)
    image = _finish(image, rng) + _pixel_noise(rng, s, 2.5)[..., None]
    return _Scene(image=image.astype(np.float32), surface=np.ones((s, s), np.float32))


def _render_tiles(rng: np.random.Generator, size: int) -> _Scene:
    """Grey ceramic tiles with bevelled edges and grout lines (single-channel image)."""
    s = size
    xx, yy = _grid(s)
    period = s / 4.0
    grout = 0.09 * period
    theta = np.deg2rad(rng.uniform(-0.6, 0.6))
    ox, oy = rng.uniform(0.0, period, size=2)
    cos, sin = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    u = xx * cos + yy * sin + np.float32(ox)
    v = -xx * sin + yy * cos + np.float32(oy)
    au, av = np.mod(u, period), np.mod(v, period)
    # Distance in pixels from the tile edge into the tile (negative inside the grout).
    du = np.minimum(au, period - au) - grout / 2
    dv = np.minimum(av, period - av) - grout / 2
    cover = np.clip(du + 0.5, 0.0, 1.0) * np.clip(dv + 0.5, 0.0, 1.0)

    table = rng.normal(0.0, 5.0, size=(8, 8))  # each tile is fired a little lighter or darker
    tile_u = np.floor(u / period).astype(np.int64) % 8
    tile_v = np.floor(v / period).astype(np.int64) % 8
    base = 178.0 + table[tile_u, tile_v]
    glaze = (
        5.0 * _smooth_noise(rng, s, s / 12.0)
        + 3.5 * _smooth_noise(rng, s, s / 40.0)
        + cv2.GaussianBlur(_pixel_noise(rng, s, 5.0), (0, 0), 0.8)
    )
    speckles = (rng.random((s, s)) < 0.004).astype(np.float32)
    speckles = cv2.GaussianBlur(speckles, (0, 0), 0.7) * -120.0
    # Light from the top left: the tile's left/top bevel is bright, right/bottom dark.
    side_u = np.where(au < period / 2, 1.0, -1.0)
    side_v = np.where(av < period / 2, 1.0, -1.0)
    bevel = 16.0 * (side_u * np.exp(-np.maximum(du, 0.0) / 2.0))
    bevel += 16.0 * (side_v * np.exp(-np.maximum(dv, 0.0) / 2.0))
    tile = base + glaze + speckles + bevel
    grout_value = 92.0 + 7.0 * _smooth_noise(rng, s, s / 60.0) + _pixel_noise(rng, s, 6.0)
    image = (cover * tile + (1.0 - cover) * grout_value)[..., None].astype(np.float32)
    image = _finish(image, rng) + _pixel_noise(rng, s, 2.0)[..., None]
    return _Scene(image=image.astype(np.float32), surface=np.ones((s, s), np.float32))


def _render_washer(rng: np.random.Generator, size: int) -> _Scene:
    """A brushed-metal flat washer, centred with small jitter, on a dark plain background."""
    s = size
    xx, yy = _grid(s)
    cx, cy = (s / 2.0 + rng.uniform(-0.025, 0.025, size=2) * s).tolist()
    outer = 0.35 * s * rng.uniform(0.985, 1.015)
    inner = 0.42 * outer
    dx, dy = xx - np.float32(cx), yy - np.float32(cy)
    dist = np.sqrt(dx * dx + dy * dy)
    phi = np.arctan2(dy, dx)
    cover = (np.clip(outer - dist + 0.5, 0, 1) * np.clip(dist - inner + 0.5, 0, 1)).astype(
        np.float32
    )

    # Background: plain slate surface with a vignette and the washer's soft shadow.
    r2 = ((xx - s / 2) ** 2 + (yy - s / 2) ** 2) / (s / 2) ** 2
    bg_level = (1.0 + 0.03 * _smooth_noise(rng, s, s / 4.0)) * (1.0 - 0.12 * r2)
    shift = np.float32([[1, 0, 0.015 * s], [0, 1, 0.02 * s]])
    shadow = cv2.warpAffine(cover, shift, (s, s))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.02 * s)
    bg_level = bg_level * (1.0 - 0.45 * shadow) + _pixel_noise(rng, s, 1.5) / 60.0
    background = _colour(3, (62.0, 66.0, 60.0)) * bg_level[..., None]

    # Metal: concentric brushing, an anisotropic (bow-tie) highlight, dark outer and lit inner
    # chamfers. The highlight direction is the washer's "rotation" from image to image.
    brushing = np.interp(dist.ravel() * 2.0, np.arange(2 * s), rng.normal(0, 1, 2 * s))
    brushing = brushing.reshape(s, s)
    light = np.deg2rad(-50.0 + rng.uniform(-12.0, 12.0))
    lobe = np.abs(np.cos(phi - light)) ** 6 * (1.0 + 0.3 * np.cos(phi - light))
    chamfer = 0.022 * s
    t_out = np.clip((outer - dist) / chamfer, 0.0, 1.0)
    t_in = np.clip((dist - inner) / chamfer, 0.0, 1.0)
    metal = 148.0 + 8.0 * brushing + 55.0 * lobe
    metal -= 50.0 * (1.0 - t_out)
    metal += 35.0 * (1.0 - t_in) * (0.5 + 0.5 * np.cos(phi - light + np.pi))
    metal += 4.0 * _smooth_noise(rng, s, s / 10.0) + _pixel_noise(rng, s, 2.0)
    tint = np.array([1.0, 0.985, 0.955], np.float32) * rng.uniform(0.97, 1.03)
    foreground = metal[..., None].astype(np.float32) * tint

    gain = np.float32(1.0 + rng.uniform(-0.04, 0.04))
    background = (background * gain).astype(np.float32)
    foreground = (foreground * gain).astype(np.float32)
    image = _blend(background, foreground, cover)
    return _Scene(
        image=image.astype(np.float32),
        surface=cover,
        background=background,
        foreground=foreground,
        cover=cover,
        center=(cx, cy),
        radii=(inner, outer),
    )


def _render_wood(rng: np.random.Generator, size: int) -> _Scene:
    """Flat-sawn wood: warped growth rings along the board plus fine pore streaks."""
    s = size
    xx, yy = _grid(s)
    theta = np.deg2rad(rng.uniform(-3.0, 3.0))
    cos, sin = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    v = -xx * sin + yy * cos
    warp = 0.05 * s * _smooth_noise(rng, s, s / 2.5) + 0.012 * s * _smooth_noise(rng, s, s / 10.0)
    period = s / 10.0 * rng.uniform(0.92, 1.08)
    ring = np.mod((v + warp) / period + rng.uniform(0.0, 1.0), 1.0)
    late_wood = ring**3  # earlywood is light, latewood darkens sharply before the next ring
    pores = _streak_noise(rng, s, cell_x=s / 6.0, cell_y=1.5)
    jitter = rng.uniform(0.96, 1.04, size=3)
    light = np.array([120.0, 170.0, 212.0]) * jitter  # BGR
    dark = np.array([62.0, 104.0, 152.0]) * jitter
    mix = np.clip(late_wood + 0.06 * pores, 0.0, 1.0)[..., None]
    image = (light * (1.0 - mix) + dark * mix).astype(np.float32)
    image = _finish(image, rng) + _pixel_noise(rng, s, 2.5)[..., None]
    return _Scene(image=image.astype(np.float32), surface=np.ones((s, s), np.float32))


# --------------------------------------------------------------------------------------------
# Defects. Each painter returns a new float image and leaves the scene untouched; the mask is
# derived afterwards from the difference to the clean rendering.
# --------------------------------------------------------------------------------------------


def _scratch(rng: np.random.Generator, scene: _Scene, bgr: Sequence[float]) -> np.ndarray:
    """Two to four parallel thin curved lines: dark grooves with bright scraped cores."""
    s = scene.size
    if scene.center is not None and scene.radii is not None:
        # On the washer: an arc roughly following the brushing, drifting across the ring.
        inner, outer = scene.radii
        width = outer - inner
        rho = rng.uniform(inner + 0.2 * width, outer - 0.2 * width, size=2)
        a0 = rng.uniform(0.0, 2.0 * np.pi)
        sweep = np.deg2rad(rng.uniform(50.0, 100.0)) * rng.choice([-1.0, 1.0])
        t = np.linspace(0.0, 1.0, 48)
        radius = rho[0] + (rho[1] - rho[0]) * t
        angle = a0 + sweep * t
        path = np.stack(
            [scene.center[0] + radius * np.cos(angle), scene.center[1] + radius * np.sin(angle)],
            axis=1,
        )
    else:
        # On a texture: a gently bent quadratic Bezier curve.
        center = np.asarray(_pick_point(rng, scene))
        angle = rng.uniform(0.0, np.pi)
        length = s * rng.uniform(0.3, 0.5)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        p0, p2 = center - direction * length / 2, center + direction * length / 2
        p1 = center + normal * length * rng.uniform(-0.25, 0.25)
        t = np.linspace(0.0, 1.0, 48)[:, None]
        path = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    thickness = max(2, round(s * rng.uniform(0.006, 0.010)))
    normals = _normals(path)
    groove = np.zeros((s, s), np.float32)
    core = np.zeros((s, s), np.float32)
    offset = 0.0
    n = len(path)
    for _ in range(int(rng.integers(2, 5))):
        # Strokes of one abrasion run side by side but start and end at different places.
        first, last = int(rng.integers(0, n // 3)), int(rng.integers(2 * n // 3, n))
        line = (path + normals * offset)[first : last + 1]
        groove = np.maximum(groove, _draw_polyline(s, line, thickness + 2))
        core = np.maximum(core, _draw_polyline(s, line, thickness))
        offset += thickness + s * rng.uniform(0.012, 0.03)
    # A real scratch is not uniformly deep: its brightness fades in and out along the stroke.
    depth = np.clip(0.8 + 0.2 * _smooth_noise(rng, s, 0.04 * s), 0.5, 1.0)
    image = scene.image * (1.0 - 0.5 * (groove * scene.surface)[..., None])
    return _blend(image, _colour(scene.channels, bgr), 0.9 * core * depth * scene.surface)


def _stain(
    rng: np.random.Generator, scene: _Scene, tint: Sequence[float], radius: tuple[float, float]
) -> np.ndarray:
    """Blotchy translucent stain with a soft edge and a darker drying ring.

    Args:
        rng: Random stream.
        scene: Clean scene.
        tint: Per-channel (BGR) factor the fully stained surface is multiplied by.
        radius: Range of the stain radius as fractions of the image side.
    """
    s = scene.size
    r = s * rng.uniform(*radius)
    alpha = _blob_alpha(rng, s, _pick_point(rng, scene), r, irregularity=0.3, softness=0.35)
    blotches = np.clip(0.75 + 0.25 * _smooth_noise(rng, s, r / 3.0), 0.0, 1.2)
    ring = 4.0 * alpha * (1.0 - alpha)  # liquid deposits pigment at its drying edge
    a = np.clip(0.9 * alpha * blotches + 0.25 * ring, 0.0, 1.0) * scene.surface
    factor = _colour(scene.channels, tint) if scene.channels == 1 else np.asarray(tint, np.float32)
    return _blend(scene.image, scene.image * factor, a)


def _hole(rng: np.random.Generator, scene: _Scene, frayed: bool) -> np.ndarray:
    """A dark hole with a rim: frayed light fibres for fabric, a darkened edge for wood."""
    s = scene.size
    center = _pick_point(rng, scene)
    r = s * rng.uniform(0.06, 0.10)
    core = _blob_alpha(rng, s, center, r, irregularity=0.15, softness=0.1)
    outer = _blob_alpha(rng, s, center, 1.35 * r, irregularity=0.2, softness=0.15)
    rim = np.clip(outer - core, 0.0, 1.0)
    image = scene.image
    if frayed:
        fibres = 0.75 + 0.25 * _streak_noise(rng, s, cell_x=2.0, cell_y=r / 2.0)
        loose = _colour(scene.channels, (205.0, 200.0, 192.0)) * fibres[..., None]
        image = _blend(image, 0.4 * image + 0.6 * loose, rim)
        # Broken thread ends reaching into the hole.
        ends = np.zeros((s, s), np.float32)
        for _ in range(int(rng.integers(5, 10))):
            phi = rng.uniform(0.0, 2.0 * np.pi)
            start = np.array(center) + 1.1 * r * np.array([np.cos(phi), np.sin(phi)])
            tip = start - rng.uniform(0.3, 0.7) * r * np.array([np.cos(phi), np.sin(phi)])
            ends = np.maximum(ends, _draw_polyline(s, np.stack([start, tip]), 2))
        core_paint = _colour(scene.channels, (24.0, 22.0, 22.0))
        image = _blend(image, core_paint, core)
        return _blend(image, loose, 0.9 * ends * outer)
    image = _blend(image, 0.45 * image, rim)
    return _blend(image, _colour(scene.channels, (14.0, 20.0, 28.0)), core)


def _thread(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    """A loose coloured thread lying on the fabric, shaded as a round yarn."""
    s = scene.size
    path = _random_walk(
        rng, _pick_point(rng, scene), s * rng.uniform(0.4, 0.6), s * 0.01, turn=0.12
    )
    thickness = max(2, round(s * rng.uniform(0.012, 0.018)))
    palette = [(40.0, 40.0, 200.0), (50.0, 200.0, 225.0), (30.0, 30.0, 30.0), (60.0, 170.0, 60.0)]
    colour = _colour(scene.channels, palette[int(rng.integers(len(palette)))])
    edge = _draw_polyline(s, path, thickness + 1)
    core = _draw_polyline(s, path, max(1, thickness - 2))
    image = _blend(scene.image, 0.6 * colour, edge)
    return _blend(image, colour, core)


def _crack(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    """A jagged branching crack: dark fissure with a light chipped edge."""
    s = scene.size
    main = _random_walk(rng, _pick_point(rng, scene), s * rng.uniform(0.3, 0.5), s * 0.018, 0.45)
    fork = int(rng.integers(len(main) // 4, 3 * len(main) // 4))
    branch = _random_walk(rng, (0.0, 0.0), s * rng.uniform(0.1, 0.2), s * 0.018, 0.45)
    branch = branch - branch[0] + main[fork]
    widest = max(2, round(s * rng.uniform(0.012, 0.02)))
    dark = np.zeros((s, s), np.uint8)
    chipped = np.zeros((s, s), np.uint8)
    for path, top in ((main, widest), (branch, max(1, widest - 1))):
        t = np.linspace(0.0, 1.0, len(path) - 1)
        widths = np.maximum(1, np.round(top * np.sqrt(1.0 - np.abs(2.0 * t - 1.0)))).astype(int)
        pts = np.round(path * 16.0).astype(np.int32)
        for k, w in enumerate(widths):
            a, b = tuple(pts[k].tolist()), tuple(pts[k + 1].tolist())
            cv2.line(dark, a, b, 255, int(w), cv2.LINE_AA, 4)
            # The chipped glaze catches the light on the upper-left side of the fissure.
            off = (a[0] - 24, a[1] - 24), (b[0] - 24, b[1] - 24)
            cv2.line(chipped, off[0], off[1], 255, int(w), cv2.LINE_AA, 4)
    light = _colour(scene.channels, (228.0, 228.0, 228.0))
    image = _blend(scene.image, light, 0.6 * chipped.astype(np.float32) / 255.0)
    return _blend(image, _colour(scene.channels, (30.0, 30.0, 30.0)), dark / np.float32(255.0))


def _contamination(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    """A cluster of dark irregular particles and a stray fibre."""
    s = scene.size
    center = np.asarray(_pick_point(rng, scene))
    spread = s * rng.uniform(0.035, 0.06)
    alpha = np.zeros((s, s), np.float32)
    for _ in range(int(rng.integers(6, 12))):
        c = center + rng.normal(0.0, spread, 2)
        r = s * rng.uniform(0.012, 0.03)
        blob = _blob_alpha(rng, s, (c[0], c[1]), r, irregularity=0.35, softness=0.15)
        alpha = np.maximum(alpha, blob)
    fibre = _random_walk(rng, tuple(center), s * rng.uniform(0.12, 0.2), s * 0.008, 0.25)
    alpha = np.maximum(alpha, _draw_polyline(s, fibre, 2))
    grit = 48.0 + 14.0 * _smooth_noise(rng, s, 2.0)
    paint = grit[..., None] * _colour(scene.channels, (1.0, 1.0, 1.0))
    return _blend(scene.image, paint, alpha * scene.surface)


def _glue(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    """An elongated glossy strip of dried glue that hides the surface texture beneath it."""
    s = scene.size
    r = s * rng.uniform(0.08, 0.12)
    alpha = _blob_alpha(
        rng, s, _pick_point(rng, scene), r,
        aspect=rng.uniform(2.0, 3.5), irregularity=0.2, softness=0.3,
    )  # fmt: skip
    smoothed = cv2.GaussianBlur(scene.image, (0, 0), 2.0).reshape(scene.image.shape)
    sheen = 18.0 * _smoothstep((alpha - 0.6) / 0.4)[..., None]  # brighter where the glue is thick
    glossy = 0.35 * smoothed + 0.65 * _colour(scene.channels, (238.0, 238.0, 238.0)) + sheen
    return _blend(scene.image, glossy, alpha * scene.surface)


def _rust(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    """A rough orange-brown corrosion patch with a soft edge, only on the metal."""
    s = scene.size
    r = s * rng.uniform(0.07, 0.12)
    alpha = _blob_alpha(rng, s, _pick_point(rng, scene), r, irregularity=0.4, softness=0.25)
    grain = np.clip(0.75 + 0.25 * _smooth_noise(rng, s, 2.0), 0.3, 1.3)
    shade = 0.6 + 0.4 * scene.image.mean(axis=2) / 200.0  # keep the metal's light falloff
    rust = _colour(scene.channels, (38.0, 78.0, 140.0)) * (grain * shade)[..., None]
    return _blend(scene.image, rust, 0.95 * alpha * scene.surface)


def _missing(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    """A piece broken off the washer's outer edge, showing the background instead."""
    assert scene.center is not None and scene.radii is not None and scene.cover is not None
    assert scene.background is not None and scene.foreground is not None
    s = scene.size
    phi = rng.uniform(0.0, 2.0 * np.pi)
    rho = scene.radii[1] * rng.uniform(1.0, 1.1)
    bite = (scene.center[0] + rho * np.cos(phi), scene.center[1] + rho * np.sin(phi))
    cut = _blob_alpha(rng, s, bite, s * rng.uniform(0.10, 0.15), irregularity=0.12, softness=0.03)
    return _blend(scene.background, scene.foreground, scene.cover * (1.0 - cut))


# --------------------------------------------------------------------------------------------
# Category registry
# --------------------------------------------------------------------------------------------

_Painter = Callable[[np.random.Generator, _Scene], np.ndarray]


@dataclass(frozen=True)
class _Category:
    render: Callable[[np.random.Generator, int], _Scene]
    defects: Mapping[str, _Painter]
    grayscale: bool = False


# Order matters: a category's position here is part of its seed, so it must never change
# (append new categories at the end).
_CATEGORIES: Mapping[str, _Category] = MappingProxyType(
    {
        "weave": _Category(
            _render_weave,
            {
                "hole": functools.partial(_hole, frayed=True),
                "stain": functools.partial(_stain, tint=(0.45, 0.55, 0.72), radius=(0.08, 0.14)),
                "thread": _thread,
            },
        ),
        "tiles": _Category(
            _render_tiles,
            {"crack": _crack, "glue": _glue, "contamination": _contamination},
            grayscale=True,
        ),
        "washer": _Category(
            _render_washer,
            {
                "scratch": functools.partial(_scratch, bgr=(245.0, 245.0, 245.0)),
                "missing": _missing,
                "rust": _rust,
            },
        ),
        "wood": _Category(
            _render_wood,
            {
                "scratch": functools.partial(_scratch, bgr=(178.0, 214.0, 236.0)),
                "hole": functools.partial(_hole, frayed=False),
                "liquid": functools.partial(_stain, tint=(0.55, 0.58, 0.62), radius=(0.09, 0.15)),
            },
        ),
    }
)

#: Every category this module can draw, mapped to its defect types (in folder/seed order).
DEFECT_TYPES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: tuple(category.defects) for name, category in _CATEGORIES.items()}
)
#: Categories whose images are single-channel (like MVTec's grid, screw and zipper).
GRAYSCALE_CATEGORIES: frozenset[str] = frozenset(
    name for name, category in _CATEGORIES.items() if category.grayscale
)
#: Default set for the demo and the tests: two textures (one greyscale) and one object.
DEMO_CATEGORIES: tuple[str, ...] = ("weave", "tiles", "washer")


# --------------------------------------------------------------------------------------------
# Rendering one sample
# --------------------------------------------------------------------------------------------


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _clean_mask(changed: np.ndarray) -> np.ndarray:
    """Close pin-holes and fill enclosed gaps of a raw changed-pixel map (never removes pixels)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_MASK_CLOSE_KERNEL,) * 2)
    closed = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    return ndimage.binary_fill_holes(closed | changed)


def _render_sample(
    category: str, spec: SyntheticSpec, split: int, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Render one image of a category, with and without its defect.

    Args:
        category: Category name (a key of ``DEFECT_TYPES``).
        spec: Dataset spec (size and seed).
        split: 0 for train/good, 1 for test/good, 2 + k for the category's k-th defect type.
        index: Image index within its folder.

    Returns:
        ``(clean, image, mask)``: uint8 (H, W, C) clean rendering, uint8 (H, W, C) image to save
        (equal to ``clean`` outside the mask) and uint8 (H, W) 0/255 mask, or None for good images.
    """
    cat = _CATEGORIES[category]
    cat_index = list(_CATEGORIES).index(category)
    # Independent streams for the clean picture and for its defect, so the clean rendering of a
    # defective sample is reproducible without knowing anything about the defect painters.
    clean_seq, defect_seq = np.random.SeedSequence([spec.seed, cat_index, split, index]).spawn(2)
    scene = cat.render(np.random.default_rng(clean_seq), spec.image_size)
    clean = _to_uint8(scene.image)
    if split < _FIRST_DEFECT_SPLIT:
        return clean, clean, None

    painter = list(cat.defects.values())[split - _FIRST_DEFECT_SPLIT]
    defect_rng = np.random.default_rng(defect_seq)
    min_area = _MIN_DEFECT_FRACTION * spec.image_size**2
    for _ in range(_MAX_DEFECT_ATTEMPTS):
        drawn = _to_uint8(painter(defect_rng, scene))
        diff = np.abs(drawn.astype(np.int16) - clean.astype(np.int16)).max(axis=2)
        mask = _clean_mask(diff > _MASK_TOLERANCE)
        if mask.sum() >= min_area:
            break
    else:  # pragma: no cover - the painters draw far larger defects than min_area
        raise RuntimeError(f"could not draw a visible defect for {category} split {split}")
    # Outside the mask the change is below the visibility tolerance: reset it so the mask is
    # exactly the set of pixels the defect changed.
    image = np.where(mask[..., None], drawn, clean)
    return clean, image, mask.astype(np.uint8) * 255


# --------------------------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------------------------


def _stamp(category: str, spec: SyntheticSpec) -> dict:
    return {
        "generator": GENERATOR_NAME,
        "format_version": FORMAT_VERSION,
        "category": category,
        "defect_types": list(DEFECT_TYPES[category]),
        "spec": dataclasses.asdict(spec),
        "note": "Synthetic data, not MVTec AD.",
    }


def _read_stamp(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _command(root: Path, category: str, spec: SyntheticSpec) -> str:
    default = SyntheticSpec()
    parts = ["python -m src.data.synthetic", f"--root {root}", f"--categories {category}"]
    for field in dataclasses.fields(SyntheticSpec):
        value = getattr(spec, field.name)
        if field.name == "seed" or value != getattr(default, field.name):
            parts.append(f"--{field.name.replace('_', '-')} {value}")
    return " ".join(parts)


def _write_png(path: Path, image: np.ndarray) -> None:
    # A single-channel image is written as an 8-bit greyscale PNG (cv2 does so for 2-D arrays).
    array = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if not cv2.imwrite(str(path), array):
        raise DatasetError(f"could not write {path}; check that the folder is writable")


def _build_category(folder: Path, category: str, spec: SyntheticSpec) -> int:
    """Write all images of one category into ``folder``; returns the number of images."""
    width = max(3, len(str(max(spec.num_train, spec.num_test_good, spec.num_test_per_defect) - 1)))
    splits: list[tuple[int, Path, int, str | None]] = [
        (_SPLIT_TRAIN, folder / "train" / "good", spec.num_train, None),
        (_SPLIT_TEST_GOOD, folder / "test" / "good", spec.num_test_good, None),
    ]
    for k, defect in enumerate(DEFECT_TYPES[category]):
        splits.append(
            (_FIRST_DEFECT_SPLIT + k, folder / "test" / defect, spec.num_test_per_defect, defect)
        )
    written = 0
    for split, out_dir, count, defect in splits:
        out_dir.mkdir(parents=True)
        mask_dir = folder / "ground_truth" / defect if defect else None
        if mask_dir is not None:
            mask_dir.mkdir(parents=True)
        for index in range(count):
            _, image, mask = _render_sample(category, spec, split, index)
            stem = f"{index:0{width}d}"
            _write_png(out_dir / f"{stem}.png", image)
            if mask_dir is not None and mask is not None:
                _write_png(mask_dir / f"{stem}_mask.png", mask)
            written += 1
    # The stamp goes in last: a folder with a stamp is always complete.
    stamp = json.dumps(_stamp(category, spec), indent=2, sort_keys=True)
    (folder / STAMP_NAME).write_text(stamp + "\n", encoding="utf-8")
    return written


def _write_readme(root: Path) -> None:
    """Describe every synthetic category found under ``root`` in ``root/README.txt``."""
    lines = [
        "SYNTHETIC DATASET - THIS IS NOT MVTec AD",
        "",
        f"Generated by {GENERATOR_NAME} (format version {FORMAT_VERSION}).",
        "The images are drawn procedurally and only imitate the MVTec AD folder layout",
        "(train/good, test/<defect>, ground_truth/<defect>/*_mask.png) so that the demo and the",
        "tests run without downloading anything. Scores measured on this data say nothing about",
        "performance on MVTec AD.",
        "",
        "Categories:",
    ]
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        stamp = _read_stamp(folder)
        if not stamp or stamp.get("generator") != GENERATOR_NAME:
            continue
        spec = stamp.get("spec", {})
        lines.append(
            f"  {folder.name}: seed {spec.get('seed')}, {spec.get('image_size')} px, "
            f"{spec.get('num_train')} train, {spec.get('num_test_good')} test good, "
            f"{spec.get('num_test_per_defect')} per defect type "
            f"({', '.join(stamp.get('defect_types', []))})"
        )
        try:
            command = _command(root, folder.name, SyntheticSpec(**spec))
        except (TypeError, PatchCoreError):
            continue
        lines.append(f"    regenerate: {command}")
    tmp = root / f".{README_NAME}.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, root / README_NAME)


def _check_categories(categories: Sequence[str]) -> list[str]:
    if isinstance(categories, str):  # a bare string would be split into letters
        categories = [categories]
    names = list(dict.fromkeys(categories))
    valid = ", ".join(DEFECT_TYPES)
    if not names:
        raise DatasetError(f"no category requested; choose from: {valid}")
    unknown = [name for name in names if name not in _CATEGORIES]
    if unknown:
        raise DatasetError(
            f"unknown synthetic category {', '.join(map(repr, unknown))}; valid categories are: "
            f"{valid}"
        )
    return names


def generate_dataset(
    root: str | Path,
    categories: Sequence[str] = DEMO_CATEGORIES,
    spec: SyntheticSpec = SyntheticSpec(),  # frozen, so sharing the default is safe
    overwrite: bool = False,
) -> Path:
    """Write a synthetic dataset in the MVTec AD layout.

    Each category is built in a hidden temporary sibling folder and renamed into place only when
    complete, so an interrupted run never leaves a half-written category. A category folder that
    already holds a stamp for the same spec is skipped, which makes reruns cheap and idempotent.

    Args:
        root: Dataset root; created if missing.
        categories: Category names (see ``DEFECT_TYPES``); duplicates are ignored.
        spec: Image size, image counts and seed.
        overwrite: Replace a category folder generated earlier with a different spec.

    Returns:
        ``root`` as a Path.

    Raises:
        DatasetError: An unknown category; an existing category folder generated with another
            spec (and ``overwrite`` is False) or not generated by this module at all (it is never
            deleted); or the root is not writable.
    """
    names = _check_categories(categories)
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create dataset root {root}: {exc}") from exc

    for name in names:
        started = time.perf_counter()
        dest = root / name
        wanted = _stamp(name, spec)
        if dest.exists():
            found = _read_stamp(dest)
            if found == wanted:
                logger.info("%s: up to date in %s (seed %d), skipped", name, dest, spec.seed)
                continue
            if found is None or found.get("generator") != GENERATOR_NAME:
                raise DatasetError(
                    f"{dest} exists but was not written by the synthetic generator (no valid "
                    f"{STAMP_NAME}); it is never deleted automatically. Choose another --root or "
                    f"remove the folder yourself"
                )
            if not overwrite:
                raise DatasetError(
                    f"{dest} was generated with different settings ({found.get('spec')}, format "
                    f"{found.get('format_version')}) than requested ({wanted['spec']}, format "
                    f"{FORMAT_VERSION}); delete the folder or pass overwrite=True (--overwrite)"
                )
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root))
            tmp.chmod(0o755)  # mkdtemp makes it private (0700); the dataset is ordinary data
        except OSError as exc:
            raise DatasetError(f"cannot write into dataset root {root}: {exc}") from exc
        try:
            count = _build_category(tmp, name, spec)
            if dest.exists():
                # Swap via a second rename so that dest is never half old, half new.
                old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=root))
                os.replace(dest, old)
                os.replace(tmp, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, dest)
        except OSError as exc:
            raise DatasetError(f"cannot write category {name} into {root}: {exc}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        logger.info(
            "%s: wrote %d synthetic images (%d train, %d test good, %d x %d defective) to %s "
            "in %.1f s",
            name, count, spec.num_train, spec.num_test_good, len(DEFECT_TYPES[name]),
            spec.num_test_per_defect, dest, time.perf_counter() - started,
        )  # fmt: skip
    _write_readme(root)
    return root


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    default = SyntheticSpec()
    listing = "; ".join(
        f"{name}{' (greyscale)' if name in GRAYSCALE_CATEGORIES else ''}: {', '.join(defects)}"
        for name, defects in DEFECT_TYPES.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m src.data.synthetic",
        description="Generate a small SYNTHETIC anomaly-detection dataset in the MVTec AD layout "
        "(not MVTec AD itself).",
        epilog=f"Categories and defect types: {listing}.",
    )
    parser.add_argument("--root", required=True, type=Path, help="dataset root folder")
    parser.add_argument(
        "--categories", nargs="+", default=list(DEMO_CATEGORIES), metavar="NAME",
        help=f"categories to generate (default: {' '.join(DEMO_CATEGORIES)})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--image-size", type=int, default=default.image_size)
    parser.add_argument("--num-train", type=int, default=default.num_train)
    parser.add_argument("--num-test-good", type=int, default=default.num_test_good)
    parser.add_argument("--num-test-per-defect", type=int, default=default.num_test_per_defect)
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace category folders generated earlier with other settings",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 on a dataset or configuration error (reported as one line on stderr).
    """

    def body(arguments: Sequence[str] | None) -> int:
        args = _parser().parse_args(arguments)
        setup_logging()
        spec = SyntheticSpec(
            image_size=args.image_size,
            num_train=args.num_train,
            num_test_good=args.num_test_good,
            num_test_per_defect=args.num_test_per_defect,
            seed=args.seed,
        )
        generate_dataset(args.root, args.categories, spec, overwrite=args.overwrite)
        return 0

    return run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
