"""The Python API the scripts are thin wrappers over: build, fit, score, save, load.

```python
from src.config import load_config
from src.patchcore import PatchCore

model = PatchCore(load_config("configs/mvtec.yaml", ["backbone.checkpoint=weights.ckpt"]))
model.fit("data/mvtec_ad/bottle/train/good")      # a folder or a list of image files
model.save("outputs/bottle/model")
result = PatchCore.load("outputs/bottle/model").predict(["photo.png"])
result.image_scores, result.anomaly_maps           # (B,), (B, H, W)
```
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src import runtime
from src.config import Config, config_from_dict
from src.coreset import coreset_size, greedy_coreset
from src.data.mvtec import IMAGE_SUFFIXES
from src.data.transform import Geometry, normalise, read_image
from src.errors import DatasetError, PatchCoreError
from src.memory_bank import MemoryBank
from src.progress import progress_bar
from src.scoring import Scores, score_features

logger = logging.getLogger(__name__)

ImageInput = str | Path | np.ndarray


@dataclass
class Prediction(Scores):
    """Scores of a batch plus the images as the network saw them.

    Attributes:
        images: (B, H, W, 3) uint8 resized and cropped inputs, aligned with ``anomaly_maps``.
    """

    images: np.ndarray | None = None


def _as_rgb(image: ImageInput) -> np.ndarray:
    """A path or an array (H, W), (H, W, 1|3|4), uint8 or uint16, as (H, W, 3) uint8 RGB."""
    if isinstance(image, str | Path):
        return read_image(image)
    array = np.asarray(image)
    if array.dtype == np.uint16:
        array = (array.astype(np.float32) / 257.0).round().astype(np.uint8)
    if array.dtype != np.uint8:
        raise DatasetError(
            f"image arrays must be uint8 (or uint16) RGB; got dtype {array.dtype}. Convert with "
            "np.clip(x * 255, 0, 255).astype(np.uint8) for float images in [0, 1]."
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DatasetError(
            f"image arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}."
        )
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _prefetched(
    pool: ThreadPoolExecutor, function: Any, items: Sequence[Any], depth: int
) -> Iterator[Any]:
    """``map(function, items)`` computed in ``pool`` at most ``depth`` items ahead of the reader.

    Unlike ``pool.map``, which submits everything at once, memory stays bounded by ``depth``
    prepared images however large the folder.
    """
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items; the last one may be shorter."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def list_images(source: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """A folder becomes its image files in name order; a single image becomes a list of one."""
    if isinstance(source, np.ndarray) and source.ndim == 4:
        return list(source)
    if isinstance(source, str | Path | np.ndarray):
        path = Path(source) if not isinstance(source, np.ndarray) else None
        if path is not None and path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DatasetError(f"{path} holds no image ({', '.join(IMAGE_SUFFIXES)}).")
            return list(files)
        return [source]
    return list(source)


class PatchCore:
    """PatchCore anomaly detector: feature network, memory bank and scoring settings.

    Args:
        config: the resolved configuration; built-in defaults when None.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.geometry = Geometry.from_config(self.config.data)
        self.bank: MemoryBank | None = None
        self._network: Any = None
        self.weights_fingerprint: str | None = None
        self.weights_source: str | None = None
        self.weights_file: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------- network
    @property
    def network(self) -> Any:
        """The MindSpore patch-feature network, built (and its weights loaded) on first use."""
        if self._network is None:
            self._network = self._build_network()
        return self._network

    def _build_network(self) -> Any:
        rt = self.config.runtime
        runtime.configure(rt.device_target, rt.device_id, rt.mode, rt.num_threads)
        from src.models.backbone import WideResNet, initialise_randomly
        from src.models.patch_features import PatchFeatures
        from src.weights import load_backbone_weights, weights_fingerprint

        started = time.perf_counter()
        backbone = WideResNet(out_layers=self.config.backbone.layers)
        checkpoint = self.config.backbone.checkpoint
        if checkpoint:
            report = load_backbone_weights(backbone, checkpoint)
            self.weights_source = str(Path(checkpoint).name)
            self.weights_fingerprint = report.fingerprint
            self.weights_file = {
                "path": str(report.path),
                "format": report.format,
                "sha256": report.sha256,
                "release": report.release,
            }
        else:
            initialise_randomly(backbone, self.config.backbone.seed)
            self.weights_source = f"random initialisation (seed {self.config.backbone.seed})"
            self.weights_fingerprint = weights_fingerprint(backbone)
            logger.warning(
                "backbone: no checkpoint given, using random weights (fine for the generated "
                "demo data, not for real inspection; set backbone.checkpoint)"
            )
        features = self.config.features
        network = PatchFeatures(
            backbone,
            self.geometry.output_hw,
            patch_size=features.patch_size,
            upsample=features.upsample,
            aggregation=features.aggregation,
            layer_dim=features.layer_dim,
            target_dim=features.target_dim,
        )
        network.set_train(False)
        logger.info(
            "network: %s %s -> %d-d patch features on a %dx%d grid, weights: %s (%.1f s)",
            self.config.backbone.name,
            "+".join(self.config.backbone.layers),
            network.feature_dim,
            *network.grid_hw,
            self.weights_source,
            time.perf_counter() - started,
        )
        return network

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Patch features of prepared images.

        Args:
            images: (B, H, W, 3) uint8, already resized and cropped to ``geometry.output_hw``.

        Returns:
            (B, h, w, D) float32 patch features.
        """
        import mindspore as ms

        return self.network(ms.Tensor(normalise(images))).asnumpy()

    def _prepared_batches(
        self, images: Sequence[ImageInput], desc: str
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Decode and transform ahead in worker threads; yield (prepared uint8, features)."""
        batch_size = self.config.data.batch_size

        def prepare(item: ImageInput) -> np.ndarray:
            return self.geometry.apply(_as_rgb(item))

        workers = self.config.data.num_workers
        with (
            ThreadPoolExecutor(max_workers=max(workers, 1)) as pool,
            progress_bar(total=len(images), desc=desc, unit="img", leave=False) as bar,
        ):
            prepared = (
                _prefetched(pool, prepare, images, 2 * batch_size)
                if workers > 0
                else map(prepare, images)
            )
            for batch in _batches(prepared, batch_size):
                stacked = np.stack(batch)
                yield stacked, self.embed(stacked)
                bar.update(len(batch))

    # ----------------------------------------------------------------------------- fit
    def fit(self, images: ImageInput | Sequence[ImageInput], name: str = "") -> PatchCore:
        """Build the memory bank from defect-free images.

        Args:
            images: a folder, image files, or (H, W, 3) uint8 RGB arrays.
            name: label for progress bars and logs (e.g. the category).

        Returns:
            self, with ``bank`` set.
        """
        items = list_images(images)
        if not items:
            raise DatasetError("fit() needs at least one defect-free image; got none.")
        label = f"{name} " if name else ""
        network = self.network
        grid_h, grid_w = network.grid_hw
        per_image = grid_h * grid_w
        features = np.empty((len(items) * per_image, network.feature_dim), dtype=np.float32)
        started = time.perf_counter()
        row = 0
        for _, batch_features in self._prepared_batches(items, f"{label}features"):
            flat = batch_features.reshape(-1, network.feature_dim)
            features[row : row + len(flat)] = flat
            row += len(flat)
        extract_seconds = time.perf_counter() - started
        logger.info(
            "%sfeatures: %d images -> %d patches of %d dims in %.1f s",
            label,
            len(items),
            len(features),
            network.feature_dim,
            extract_seconds,
        )
        coreset = self.config.coreset
        # coreset.count, when set, overrides the ratio (see the config key's documentation).
        ratio = None if coreset.count is not None else coreset.ratio
        size = coreset_size(len(features), ratio, coreset.count)
        started = time.perf_counter()
        picks = greedy_coreset(
            features,
            size,
            projection_dim=coreset.projection_dim,
            projection=coreset.projection,
            start=coreset.start,
            seed=coreset.seed,
        )
        coreset_seconds = time.perf_counter() - started
        self.bank = MemoryBank(
            features[picks],
            {
                "name": name,
                "config": self.config.to_dict(),
                "weights_source": self.weights_source,
                "weights_fingerprint": self.weights_fingerprint,
                "weights_file": self.weights_file,
                "feature_dim": network.feature_dim,
                "grid_hw": list(network.grid_hw),
                "image_hw": list(self.geometry.output_hw),
                "num_train_images": len(items),
                "num_patches": len(features),
                "seconds": {
                    "features": round(extract_seconds, 2),
                    "coreset": round(coreset_seconds, 2),
                },
            },
        )
        return self

    # ----------------------------------------------------------------------------- predict
    def predict(
        self, images: ImageInput | Sequence[ImageInput], name: str = "", keep_images: bool = True
    ) -> Prediction:
        """Score images against the memory bank.

        Args:
            images: a folder, image files, or (H, W, 3) uint8 RGB arrays of any size.
            name: label for the progress bar.
            keep_images: also return the prepared images (for pictures).

        Returns:
            image scores (B,), patch scores (B, h, w) and anomaly maps (B, H, W) at the network
            input resolution, aligned with ``images`` (B, H, W, 3).
        """
        if self.bank is None:
            raise PatchCoreError("the model has no memory bank yet: call fit() or load() first.")
        items = list_images(images)
        if not items:
            raise DatasetError("predict() needs at least one image; got none.")
        parts: list[Scores] = []
        prepared: list[np.ndarray] = []
        label = f"{name} " if name else ""
        for batch, features in self._prepared_batches(items, f"{label}scoring"):
            parts.append(
                score_features(self.bank, features, self.config.scoring, self.geometry.output_hw)
            )
            if keep_images:
                prepared.append(batch)
        return Prediction(
            image_scores=np.concatenate([p.image_scores for p in parts]),
            patch_scores=np.concatenate([p.patch_scores for p in parts]),
            anomaly_maps=np.concatenate([p.anomaly_maps for p in parts]),
            images=np.concatenate(prepared) if keep_images else None,
        )

    # ----------------------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write the memory bank and its metadata atomically to ``directory``."""
        if self.bank is None:
            raise PatchCoreError("nothing to save: call fit() first.")
        return self.bank.save(directory)

    @classmethod
    def load(cls, directory: str | Path, config: Config | None = None) -> PatchCore:
        """Load a saved model.

        Args:
            directory: a folder written by :meth:`save`.
            config: the configuration to score with; None uses the one saved with the bank,
                with the default runtime (CPU) instead of the training machine's device.
                Scoring and output keys may differ from training; the feature pipeline and the
                backbone weights must match, else MemoryBankError says what differs.
        """
        bank = MemoryBank.load(directory)
        if config is None:
            # The saved settings, but this process's device: runtime keys do not affect the bank,
            # and a model trained on an Ascend server must load on a laptop CPU.
            config = config_from_dict(bank.metadata["config"])
            config.runtime = Config().runtime
        model = cls(config)
        model.use_bank(bank)
        return model

    def use_bank(self, bank: MemoryBank) -> None:
        """Score with ``bank`` from now on, after checking that it matches this model's features.

        Raises:
            MemoryBankError: the bank was built with other feature settings or weights.
        """
        self.network  # noqa: B018 - builds the network, which sets the weights fingerprint
        bank.check_compatible(self.config.to_dict(), self.weights_fingerprint or "")
        self.bank = bank
