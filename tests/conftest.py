"""Shared fixtures: one MindSpore runtime per test process, a small generated dataset."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_v", "3")


@pytest.fixture(scope="session")
def mindspore_runtime() -> None:
    """Configure MindSpore (CPU, graph mode) once; every test touching a network asks for it."""
    from src import runtime

    runtime.configure("CPU", mode="graph")


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated MVTec-layout dataset shared by the end-to-end tests."""
    from src.data.synthetic import SyntheticSpec, generate_dataset

    root = tmp_path_factory.mktemp("demo_data")
    spec = SyntheticSpec(num_train=12, num_test_good=5, num_test_per_defect=3, seed=0)
    generate_dataset(root, ["weave", "washer"], spec)
    return root
