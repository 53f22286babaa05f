"""Image and mask decoding and the one input transform of the pipeline.

Images: any of RGB, grayscale, RGBA, palette, 8- or 16-bit, any size, decoded to RGB uint8; then
resized (shorter side or square), centre-cropped and normalised with the ImageNet statistics, which
are defined here and nowhere else. Resizing uses PIL's antialiased bilinear filter, as torchvision's
``Resize`` on PIL images does in the authors' pipeline. Masks follow the same geometry with
nearest-neighbour resampling, so they stay binary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from src.config import DataConfig
from src.errors import DatasetError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB.

    16-bit images are scaled to 8 bits, grayscale is replicated to three channels and an alpha
    channel is dropped.

    Raises:
        DatasetError: the file is missing or not a decodable image.
    """
    path = Path(path)
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        reason = "does not exist" if not path.exists() else "is not a readable image"
        raise DatasetError(
            f"image {path} {reason}; replace or remove it (expected PNG, JPEG, BMP or TIFF)."
        )
    if data.dtype == np.uint16:
        data = (data.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif data.dtype != np.uint8:
        raise DatasetError(f"image {path} has pixel type {data.dtype}; expected 8 or 16 bits.")
    if data.ndim == 2:
        return np.repeat(data[:, :, None], 3, axis=2)
    if data.shape[2] == 1:
        return np.repeat(data, 3, axis=2)
    if data.shape[2] == 4:
        return cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a ground-truth mask to (H, W) bool (any non-zero pixel is defective).

    Raises:
        DatasetError: the file is missing or not a decodable image.
    """
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DatasetError(f"mask {path} is missing or not a readable image; replace it.")
    if data.ndim == 3:
        data = data.max(axis=2)
    return data > 0


@dataclass(frozen=True)
class Geometry:
    """Where an image of any size ends up: resize, then centre crop.

    Attributes:
        resize: target length of the shorter side ("shorter") or both sides ("square").
        resize_mode: "shorter" or "square".
        crop: centre crop side, or None for none.
    """

    resize: int = 256
    resize_mode: str = "shorter"
    crop: int | None = 224

    @classmethod
    def from_config(cls, data: DataConfig) -> Geometry:
        return cls(data.resize, data.resize_mode, data.crop)

    @property
    def output_hw(self) -> tuple[int, int]:
        """(height, width) of every transformed image; square by construction."""
        side = self.crop if self.crop is not None else self.resize
        return side, side

    def resized_hw(self, height: int, width: int) -> tuple[int, int]:
        """Size after resizing, following torchvision's integer rounding for "shorter"."""
        if self.resize_mode == "square":
            return self.resize, self.resize
        if height <= width:
            return self.resize, int(self.resize * width / height)
        return int(self.resize * height / width), self.resize

    def apply(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        """Resize and centre-crop an (H, W[, C]) uint8 or bool array."""
        height, width = image.shape[:2]
        new_h, new_w = self.resized_hw(height, width)
        is_bool = image.dtype == bool
        pil = Image.fromarray(image.astype(np.uint8) * 255 if is_bool else image)
        if (new_h, new_w) != (height, width):
            pil = pil.resize(
                (new_w, new_h), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
            )
        out = np.asarray(pil)
        if self.crop is not None:
            if self.crop > min(new_h, new_w):
                raise DatasetError(
                    f"crop {self.crop} is larger than the resized image {new_h}x{new_w}."
                )
            top = round((new_h - self.crop) / 2.0)
            left = round((new_w - self.crop) / 2.0)
            out = out[top : top + self.crop, left : left + self.crop]
        return out > 127 if is_bool else np.ascontiguousarray(out)


def normalise(images: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 with ImageNet mean and std."""
    scaled = images.astype(np.float32) / 255.0
    return ((scaled - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2).copy()


def prepare_images(images: Sequence[np.ndarray], geometry: Geometry) -> np.ndarray:
    """Resize and crop decoded (H, W, 3) uint8 images to one (B, h, w, 3) uint8 batch."""
    return np.stack([geometry.apply(image) for image in images])
