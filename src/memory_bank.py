"""The memory bank (PatchCore Sec. 3.2): coreset patch features, their search index and metadata.

A saved model is a folder with ``memory_bank.npy`` (M, D) float32 and ``metadata.json`` (resolved
config, feature width, image geometry, backbone weights fingerprint, bank checksum). The folder is
written under a temporary name and renamed into place, so an interrupted run never leaves a
half-written model; loading checks the checksum and refuses a bank built with another feature
pipeline than the one asked for.

Search is exact L2 (faiss ``IndexFlatL2``), as in the paper; this module knows nothing of MindSpore.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from src.errors import MemoryBankError
from src.fileio import default_mode

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
BANK_FILE = "memory_bank.npy"
METADATA_FILE = "metadata.json"

# Config keys that change the patch features: a bank is only valid for the same values.
FEATURE_KEYS = {
    "data": ("resize", "resize_mode", "crop"),
    "backbone": ("name", "layers"),
    "features": ("patch_size", "aggregation", "upsample", "layer_dim", "target_dim"),
}


def feature_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config dict that determines the patch features (see FEATURE_KEYS)."""
    return {
        f"{section}.{key}": config[section][key]
        for section, keys in FEATURE_KEYS.items()
        for key in keys
    }


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@dataclass
class MemoryBank:
    """Coreset features and a nearest-neighbour index over them.

    Attributes:
        vectors: (M, D) float32 bank entries.
        metadata: provenance and the settings the features were made with.
    """

    vectors: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise MemoryBankError(
                f"a memory bank needs a non-empty (M, D) array; got shape {vectors.shape}."
            )
        self.vectors = vectors
        # faiss computes |q|^2 - 2 q.b + |b|^2 in float32. Patch features are post-ReLU averages,
        # far from the origin, so that sum cancels badly; distances do not change under
        # translation, and searching around the bank's mean keeps the norms small.
        self._centre = vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
        self._index = faiss.IndexFlatL2(vectors.shape[1])
        self._index.add(vectors - self._centre)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest bank entries of each query.

        Args:
            queries: (Q, D) features.
            k: neighbours per query, 1 <= k <= len(bank).

        Returns:
            distances: (Q, k) Euclidean distances, ascending; indices: (Q, k) int64 bank rows.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise MemoryBankError(
                f"queries must be (Q, {self.dim}) to match the bank; got shape {queries.shape}."
            )
        k = min(k, len(self))
        squared, indices = self._index.search(queries - self._centre, k)
        # faiss computes |q|^2 - 2 q.b + |b|^2, which can dip below zero by rounding.
        return np.sqrt(np.maximum(squared, 0.0)), indices

    def save(self, directory: str | Path) -> Path:
        """Write the bank and its metadata atomically to ``directory`` (replacing it)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        metadata = dict(self.metadata)
        metadata.update(
            format_version=FORMAT_VERSION,
            bank_shape=list(self.vectors.shape),
            bank_sha256=_sha256(self.vectors),
            saved_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            os.chmod(staging, default_mode(directory=True))
            np.save(staging / BANK_FILE, self.vectors)
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
            _replace_directory(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.metadata = metadata
        logger.info("saved memory bank (%d x %d) to %s", *self.vectors.shape, directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MemoryBank:
        """Read a bank written by :meth:`save`, checking its format and checksum.

        Raises:
            MemoryBankError: missing files, an unknown format or a checksum mismatch.
        """
        directory = Path(directory)
        bank_path, meta_path = directory / BANK_FILE, directory / METADATA_FILE
        if not bank_path.is_file() or not meta_path.is_file():
            raise MemoryBankError(
                f"no trained model in {directory} (expected {BANK_FILE} and {METADATA_FILE}). "
                "Run train.py with the same config and output.dir first."
            )
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
            vectors = np.load(bank_path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise MemoryBankError(
                f"the model in {directory} is unreadable ({error}); delete it and train again."
            ) from None
        if metadata.get("format_version") != FORMAT_VERSION:
            raise MemoryBankError(
                f"the model in {directory} has format version {metadata.get('format_version')}; "
                f"this code reads version {FORMAT_VERSION}. Train it again."
            )
        if _sha256(vectors) != metadata.get("bank_sha256"):
            raise MemoryBankError(
                f"the memory bank in {directory} does not match its checksum (corrupt or "
                "edited); delete the folder and train again."
            )
        return cls(vectors, metadata)

    def check_compatible(self, config: dict[str, Any], weights_fingerprint: str) -> None:
        """Refuse a bank whose features were made differently from what ``config`` makes.

        Raises:
            MemoryBankError: listing each differing setting, saved value against requested one.
        """
        saved = self.metadata.get("config")
        if saved is None:
            raise MemoryBankError("the memory bank has no saved config; train it again.")
        wanted = feature_settings(config)
        differences = [
            f"{key}: bank {value!r}, config {wanted[key]!r}"
            for key, value in feature_settings(saved).items()
            if wanted[key] != value
        ]
        if self.metadata.get("weights_fingerprint") != weights_fingerprint:
            differences.append(
                f"backbone weights: bank {self.metadata.get('weights_source')!r} "
                f"(fingerprint {str(self.metadata.get('weights_fingerprint'))[:12]}), config "
                f"fingerprint {weights_fingerprint[:12]}"
            )
        if differences:
            raise MemoryBankError(
                "the memory bank was built with other feature settings than the config asks "
                f"for: {'; '.join(differences)}. Evaluate with the config it was trained with, "
                "or train again (output.overwrite=true)."
            )


def _replace_directory(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an existing target is swapped out, then removed."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
