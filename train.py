"""Build a PatchCore memory bank for each category: ``python train.py --config configs/mvtec.yaml``.

For every category in ``data.categories`` the defect-free images in ``train/good`` go through the
backbone, their patch features are subsampled by greedy coreset selection, and the memory bank is
saved to ``<output.dir>/<category>/model``. A category whose model already exists with the same
settings is reused, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from src import cli
from src.config import Config, add_config_arguments, load_config
from src.data.mvtec import list_train
from src.errors import MemoryBankError
from src.fileio import atomic_write_text
from src.memory_bank import MemoryBank
from src.patchcore import PatchCore

logger = logging.getLogger("train")


def model_dir(config: Config, category: str) -> Path:
    """Where the memory bank of ``category`` lives."""
    return Path(config.output.dir) / category / "model"


def _reusable(model: PatchCore, directory: Path) -> bool:
    """True if ``directory`` holds a bank made with the current settings; error if it differs."""
    if not (directory / "metadata.json").is_file():
        return False
    existing = MemoryBank.load(directory)
    wanted = model.config.to_dict()
    try:
        existing.check_compatible(wanted, model.weights_fingerprint or "")
        saved = existing.metadata["config"]["coreset"]
        if saved != wanted["coreset"]:
            raise MemoryBankError(f"coreset settings differ: bank {saved}")
    except MemoryBankError as error:
        raise MemoryBankError(
            f"{directory} already holds a model built with other settings ({error}). Set "
            "output.overwrite=true to rebuild it, or choose another output.dir."
        ) from None
    return True


def train(config: Config) -> dict[str, dict]:
    """Fit and save one memory bank per category; returns a summary per category."""
    out_dir = Path(config.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out_dir / "train_config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False)
    )
    model = PatchCore(config)
    summary: dict[str, dict] = {}
    for category in config.data.categories:
        directory = model_dir(config, category)
        samples = list_train(config.data.root, category)
        if not config.output.overwrite:
            model.network  # noqa: B018 - the weights fingerprint is part of the check
            if _reusable(model, directory):
                logger.info(
                    "%s: model exists with the same settings, reusing %s", category, directory
                )
                summary[category] = {"status": "reused"}
                continue
        started = time.perf_counter()
        model.fit([sample.path for sample in samples], name=category)
        model.save(directory)
        bank = model.bank
        assert bank is not None
        summary[category] = {
            "status": "trained",
            "images": bank.metadata["num_train_images"],
            "patches": bank.metadata["num_patches"],
            "bank": len(bank),
            "seconds": round(time.perf_counter() - started, 1),
        }
        logger.info(
            "%s: %d images, %d patches -> bank of %d in %.1f s, saved to %s",
            category,
            summary[category]["images"],
            summary[category]["patches"],
            summary[category]["bank"],
            summary[category]["seconds"],
            directory,
        )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    def body(args_list: Sequence[str] | None) -> int:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        add_config_arguments(parser)
        parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
        args = parser.parse_args(args_list)
        cli.setup_logging(args.verbose)
        config = load_config(args.config, args.overrides)
        started = time.perf_counter()
        summary = train(config)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        trained = sum(1 for item in summary.values() if item["status"] == "trained")
        logger.info(
            "train: %d categories (%d trained, %d reused) in %.1f s, peak memory %.0f MiB; "
            "models under %s",
            len(summary),
            trained,
            len(summary) - trained,
            time.perf_counter() - started,
            peak_mib,
            config.output.dir,
        )
        return 0

    return cli.run(body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
