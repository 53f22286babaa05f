"""Memory bank search against brute force, persistence, and refusal of mismatched banks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from src.config import Config
from src.errors import MemoryBankError
from src.memory_bank import MemoryBank


def _bank(rows: int = 300, dim: int = 16, seed: int = 0) -> MemoryBank:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return MemoryBank(vectors, {"config": Config().to_dict(), "weights_fingerprint": "abc"})


@pytest.mark.parametrize("k", [1, 3, 9])
def test_search_equals_brute_force(k):
    bank = _bank()
    queries = np.random.default_rng(1).normal(size=(50, 16)).astype(np.float32)
    distances, indices = bank.search(queries, k)
    full = np.linalg.norm(queries[:, None, :].astype(np.float64) - bank.vectors[None], axis=2)
    expected = np.sort(full, axis=1)[:, :k]
    np.testing.assert_allclose(distances, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.take_along_axis(full, indices, axis=1), expected, rtol=1e-4, atol=1e-4
    )


def test_bank_members_are_at_distance_zero():
    bank = _bank()
    distances, indices = bank.search(bank.vectors[:20], 1)
    np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-3)
    assert np.array_equal(indices[:, 0], np.arange(20))


def test_save_load_round_trip(tmp_path):
    bank = _bank()
    bank.save(tmp_path / "model")
    loaded = MemoryBank.load(tmp_path / "model")
    assert np.array_equal(loaded.vectors, bank.vectors)
    assert loaded.metadata["weights_fingerprint"] == "abc"
    queries = np.random.default_rng(2).normal(size=(10, 16)).astype(np.float32)
    assert np.array_equal(loaded.search(queries, 2)[0], bank.search(queries, 2)[0])


def test_save_replaces_atomically_and_leaves_no_temporaries(tmp_path):
    _bank(seed=0).save(tmp_path / "model")
    _bank(seed=1).save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert np.array_equal(MemoryBank.load(tmp_path / "model").vectors, _bank(seed=1).vectors)


def test_interrupted_save_keeps_the_previous_model(tmp_path, monkeypatch):
    _bank(seed=0).save(tmp_path / "model")

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("src.memory_bank._replace_directory", fail)
    with pytest.raises(KeyboardInterrupt):
        _bank(seed=1).save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert np.array_equal(MemoryBank.load(tmp_path / "model").vectors, _bank(seed=0).vectors)


def test_corrupt_or_missing_bank_is_refused(tmp_path):
    with pytest.raises(MemoryBankError, match="Run train.py"):
        MemoryBank.load(tmp_path / "nothing")
    _bank().save(tmp_path / "model")
    vectors = np.load(tmp_path / "model" / "memory_bank.npy")
    vectors[0, 0] += 1
    np.save(tmp_path / "model" / "memory_bank.npy", vectors)
    with pytest.raises(MemoryBankError, match="checksum"):
        MemoryBank.load(tmp_path / "model")


def test_other_format_version_is_refused(tmp_path):
    _bank().save(tmp_path / "model")
    meta_path = tmp_path / "model" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(MemoryBankError, match="format version 99"):
        MemoryBank.load(tmp_path / "model")


def test_bank_from_other_feature_settings_is_refused():
    bank = _bank()
    other = Config()
    other.features.aggregation = "concat"
    other.data.crop = 200
    with pytest.raises(MemoryBankError) as error:
        bank.check_compatible(other.to_dict(), "abc")
    assert "features.aggregation" in str(error.value) and "data.crop" in str(error.value)
    with pytest.raises(MemoryBankError, match="backbone weights"):
        bank.check_compatible(Config().to_dict(), "different-fingerprint")
    scoring_only = Config()
    scoring_only.scoring.num_neighbours = 3  # scoring settings may change between train and eval
    bank.check_compatible(scoring_only.to_dict(), "abc")


def test_bad_shapes_are_refused():
    with pytest.raises(MemoryBankError, match=r"\(M, D\)"):
        MemoryBank(np.zeros((0, 4), np.float32))
    with pytest.raises(MemoryBankError, match=r"\(Q, 16\)"):
        _bank().search(np.zeros((3, 8), np.float32), 1)


def test_saved_model_is_readable_by_others_under_the_usual_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        _bank().save(tmp_path / "model")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "model" / "metadata.json").stat().st_mode) == 0o644
