"""``benchmarks/RESULTS.md``: one ``## heading`` section per benchmark, each replaced on rerun."""

from __future__ import annotations

import re
from pathlib import Path

from src.fileio import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TITLE = (
    "# Benchmark results\n\n"
    "Each section is written by the benchmark named in it; ratios are measured side by side in "
    "one run, because absolute times drift on shared machines.\n"
)


def replace_section(heading: str, body: str, path: Path = RESULTS) -> Path:
    """Write ``## heading`` + ``body`` into ``path``, replacing that section if present."""
    text = path.read_text(encoding="utf-8") if path.exists() else TITLE
    section = f"## {heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    return atomic_write_text(path, text)
