"""What every entry script shares: logging set-up and turning project errors into one line.

A ``PatchCoreError`` (bad config, dataset, weights or model) ends the script with its message on
stderr and exit status 2, without a traceback; an interrupt exits with 130. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from src.errors import PatchCoreError


def setup_logging(verbose: bool = False) -> None:
    """One console handler for the whole process, configured once in ``main()``.

    Handlers someone else installed (an embedding application, pytest) are kept; only the level
    is set.
    """
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger().setLevel(level)


def run(body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Call ``body(argv)``; map project errors and interrupts to exit statuses."""
    try:
        return body(argv)
    except PatchCoreError as error:
        logging.getLogger("patchcore").debug("error details", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished categories are kept; rerun to continue.", file=sys.stderr)
        return 130
