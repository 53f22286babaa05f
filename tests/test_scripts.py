"""The shell scripts users run on servers, driven as they would be (bash, real arguments)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("run_standalone_train.sh", "run_eval.sh", "run_all_categories.sh")


def _bash(*args: str) -> subprocess.CompletedProcess:
    # The scripts prefer the repository's .venv; point them at this interpreter otherwise.
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_usage_line_matches_the_header(script):
    result = _bash(f"scripts/{script}")
    assert result.returncode == 2
    usage = result.stderr.strip().splitlines()[-1]
    header = (ROOT / "scripts" / script).read_text(encoding="utf-8")
    arguments = usage.split(script, 1)[1].strip()
    assert f"{script} {arguments}" in header, (usage, "not documented in the script's header")


@pytest.mark.slow
def test_all_categories_over_two_workers(demo_root, tmp_path):
    result = _bash(
        "scripts/run_all_categories.sh",
        "configs/demo.yaml",
        str(demo_root),
        "2",
        "data.categories=[weave,washer]",
        "data.resize=128",
        "data.crop=112",
        f"output.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mean" in result.stdout
    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary) == {"weave", "washer", "mean"}
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["washer.log", "weave.log"]
