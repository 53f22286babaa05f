"""Labelled progress bars that stay readable in log files.

On a terminal the bar redraws ten times a second; when stderr goes to a file (``nohup``, a job
scheduler, CI) it writes a line every 30 seconds instead, so a long coreset or feature pass still
shows that it is moving without flooding the log.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(*args: Any, enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm(*args, **kwargs)`` with the redraw interval chosen for the output stream."""
    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.1 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", interactive)
    return tqdm(*args, disable=not enabled, **kwargs)
