"""MVTec AD folder layout (Bergmann et al., CVPR 2019): listing the images and masks of a category.

```
<root>/<category>/train/good/*.png
<root>/<category>/test/good/*.png
<root>/<category>/test/<defect>/*.png
<root>/<category>/ground_truth/<defect>/<stem>_mask.png
```

Any folder with this layout is accepted as a category, not only the fifteen official ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from src.config import MVTEC_CATEGORIES
from src.errors import DatasetError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image of a category.

    Attributes:
        path: the image file.
        defect: "good" or the defect type (the test sub-folder name).
        mask_path: the ground-truth mask, or None for good images and datasets without masks.
    """

    path: Path
    defect: str
    mask_path: Path | None = None

    @property
    def label(self) -> int:
        """0 for defect-free, 1 for defective."""
        return 0 if self.defect == GOOD else 1

    @property
    def name(self) -> str:
        """A unique, file-name-safe identifier within the category, e.g. ``scratch_003``."""
        return f"{self.defect}_{self.path.stem}"


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def category_dir(root: str | Path, category: str) -> Path:
    """The folder of ``category`` under ``root``, checked to exist.

    Raises:
        DatasetError: root or category folder missing (the message lists what root holds).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"dataset root {root} does not exist. Set data.root to the folder holding the category "
            "folders (for MVTec AD the extracted mvtec_anomaly_detection folder), or run "
            "`make demo` to generate the demo dataset."
        )
    folder = root / category
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        hint = (
            "it is an MVTec AD category, so the download may be incomplete"
            if category in MVTEC_CATEGORIES
            else "check the spelling"
        )
        raise DatasetError(
            f"category folder {folder} does not exist ({hint}). Folders in {root}: "
            f"{', '.join(present) or 'none'}. Set data.categories to categories that exist."
        )
    return folder


def list_train(root: str | Path, category: str) -> list[Sample]:
    """The defect-free training images of a category (``train/good``).

    Raises:
        DatasetError: the folder is missing or holds no image.
    """
    folder = category_dir(root, category) / "train" / GOOD
    if not folder.is_dir():
        raise DatasetError(
            f"{folder} does not exist; a category needs its defect-free training images in "
            "train/good (MVTec AD layout)."
        )
    images = _images_in(folder)
    if not images:
        raise DatasetError(
            f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)}); put the defect-free "
            "training images there."
        )
    return [Sample(path, GOOD) for path in images]


def list_test(root: str | Path, category: str) -> list[Sample]:
    """The test images of a category, good first, then each defect type in name order.

    Masks are looked up as ``ground_truth/<defect>/<stem>_mask.png``. A category without a
    ``ground_truth`` folder is accepted (image-level metrics only); with one, every defective image
    must have its mask.

    Raises:
        DatasetError: no test folder, no test image, or a missing mask.
    """
    base = category_dir(root, category)
    test_dir = base / "test"
    if not test_dir.is_dir():
        raise DatasetError(
            f"{test_dir} does not exist; evaluation needs test/good and test/<defect> folders "
            "(MVTec AD layout)."
        )
    truth_dir = base / "ground_truth"
    has_masks = truth_dir.is_dir()
    if not has_masks:
        logger.warning("%s has no ground_truth folder: pixel-level metrics are skipped", base)
    defects = sorted(p.name for p in test_dir.iterdir() if p.is_dir())
    defects.sort(key=lambda name: name != GOOD)
    samples: list[Sample] = []
    for defect in defects:
        for path in _images_in(test_dir / defect):
            mask = None
            if defect != GOOD and has_masks:
                mask = truth_dir / defect / f"{path.stem}_mask.png"
                if not mask.is_file():
                    raise DatasetError(
                        f"the mask of {path} is missing: expected {mask}. Add it, or remove the "
                        "ground_truth folder to evaluate image-level metrics only."
                    )
            samples.append(Sample(path, defect, mask))
    if not samples:
        raise DatasetError(f"{test_dir} holds no test image.")
    if all(sample.label == 0 for sample in samples) or all(s.label == 1 for s in samples):
        logger.warning(
            "%s: the test set has only one class; AUROC and the threshold are undefined", base
        )
    return samples
