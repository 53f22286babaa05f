"""Convert backbone weights to a MindSpore checkpoint holding exactly the backbone's parameters.

Accepts torchvision's ``wide_resnet50_2`` state dict (.pth, zip or legacy torch.save format),
timm's weights (.safetensors or .pth) and MindSpore checkpoints (e.g. the MindSpore Hub PatchCore
file); the format is detected from the content and torch is not needed. The result loads with
``backbone.checkpoint: <output>``. Loading the original file directly works too; converting once
saves reading (and checking) the larger original at every run.

Usage (from the repository root):
    python scripts/convert_weights.py wide_resnet50_2-95faca4d.pth weights/wrn50_2.ckpt
    python scripts/convert_weights.py model.safetensors weights/wrn50_2.ckpt --layers layer2 layer3

Exit status: 0 on success, 1 with one line on stderr when the input cannot be converted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# Running as `python scripts/convert_weights.py` puts scripts/ (not the repository) on sys.path.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from src.cli import run, setup_logging  # noqa: E402
from src.weights import STAGE_NAMES, convert_weights  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments: input file, output .ckpt, optional --layers."""
    parser = argparse.ArgumentParser(
        description="Convert WideResNet backbone weights (torchvision/timm .pth or .safetensors, "
        "MindSpore .ckpt) to a MindSpore .ckpt with the backbone's parameter names."
    )
    parser.add_argument("input", type=Path, help="weights file in any supported format")
    parser.add_argument("output", type=Path, help="MindSpore checkpoint to write (*.ckpt)")
    parser.add_argument(
        "--layers",
        nargs="+",
        choices=STAGE_NAMES,
        default=list(STAGE_NAMES),
        help="stages PatchCore reads; the stem and all stages up to the deepest are kept "
        "(default: all four)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the conversion; returns the exit status (2 on bad arguments or an unreadable file)."""

    def body(arguments: Sequence[str] | None) -> int:
        args = build_parser().parse_args(arguments)
        setup_logging()
        convert_weights(args.input, args.output, layers=tuple(args.layers))
        return 0

    return run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
