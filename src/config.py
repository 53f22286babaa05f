"""The one configuration system: YAML files under ``configs/`` plus ``section.key=value`` overrides.

Every key, its type, default and meaning is declared once, in the dataclasses below; the README's
key table is generated from them (``python -m src.config --markdown``). Unknown keys are rejected
with the valid ones listed, values are type-checked, and the resolved configuration is written next
to every output so that a run can be repeated exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.errors import ConfigError

MVTEC_CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)


def _key(default: Any, help_text: str, choices: Sequence[Any] | None = None) -> Any:
    metadata = {"help": help_text, "choices": tuple(choices) if choices else None}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    root: str = _key("data/mvtec_ad", "dataset root holding one folder per category")
    categories: list[str] = _key(
        list(MVTEC_CATEGORIES),
        "categories to run; MVTec AD names or any folder under root with the MVTec layout",
    )
    resize: int = _key(256, "resize target in pixels (see resize_mode)")
    resize_mode: str = _key(
        "shorter",
        "'shorter': shorter side to `resize`, aspect kept (authors); "
        "'square': both sides to `resize` (model zoo, anomalib)",
        ("shorter", "square"),
    )
    crop: int | None = _key(224, "centre crop side in pixels; null for no crop (needs square)")
    batch_size: int = _key(8, "images per backbone forward pass")
    num_workers: int = _key(2, "threads decoding and resizing images ahead of the backbone")


@dataclass
class BackboneConfig:
    name: str = _key("wide_resnet50_2", "backbone network", ("wide_resnet50_2",))
    checkpoint: str | None = _key(
        None,
        "weights file: MindSpore .ckpt (Hub or converted), torchvision/timm .pth or "
        ".safetensors; null = random initialisation (demo only)",
    )
    seed: int = _key(0, "seed of the random initialisation when no checkpoint is given")
    layers: list[str] = _key(
        ["layer2", "layer3"], "stages to aggregate; the first one sets the patch grid"
    )


@dataclass
class FeaturesConfig:
    patch_size: int = _key(3, "neighbourhood side for local aggregation (paper: 3)")
    aggregation: str = _key(
        "adaptive",
        "'adaptive': pool each layer's neighbourhood vector to layer_dim and the layers to "
        "target_dim (authors); 'concat': per-channel average, layers concatenated (zoo)",
        ("adaptive", "concat"),
    )
    upsample: str = _key(
        "bilinear", "how deeper layers reach the first layer's grid", ("bilinear", "nearest")
    )
    layer_dim: int = _key(1024, "per-layer width with aggregation=adaptive")
    target_dim: int = _key(1024, "patch feature width with aggregation=adaptive")


@dataclass
class CoresetConfig:
    ratio: float | None = _key(0.1, "fraction of training patches kept in the memory bank")
    count: int | None = _key(None, "absolute memory bank size; overrides ratio when set")
    projection: str = _key(
        "dense",
        "random projection used for distances during selection",
        ("dense", "sparse", "none"),
    )
    projection_dim: int | None = _key(128, "projected width (authors: 128)")
    start: str = _key(
        "random",
        "first centre: 'random' index, 'first' index (zoo), or 'authors' (mean distance to "
        "10 random points)",
        ("random", "first", "authors"),
    )
    seed: int = _key(0, "seed of the projection and the start")


@dataclass
class ScoringConfig:
    num_neighbours: int = _key(1, "nearest bank entries averaged into a patch score (authors: 1)")
    distance: str = _key(
        "l2",
        "'l2': Euclidean distance (paper); 'squared_l2': squared (authors' code)",
        ("l2", "squared_l2"),
    )
    reweight: bool = _key(False, "apply the paper's Eq. 7 reweighting to the image score")
    reweight_neighbours: int = _key(9, "support size b of the Eq. 7 reweighting")
    sigma: float = _key(4.0, "Gaussian smoothing of the anomaly map, in pixels")
    map_upsample: str = _key(
        "bilinear", "patch grid to image resampling of the anomaly map", ("bilinear", "nearest")
    )


@dataclass
class EvaluationConfig:
    pro_fpr_limit: float = _key(0.3, "false-positive-rate limit of the PRO curve")
    num_pictures: int = _key(8, "side-by-side pictures written per category; -1 for all")
    map_scale: list[float] | None = _key(
        None,
        "[low, high] anomaly-map colour scale for pictures; null = from the normal training "
        "scores and the F1 threshold, the same for every image",
    )


@dataclass
class RuntimeConfig:
    device_target: str = _key("CPU", "device", ("CPU", "GPU", "Ascend"))
    device_id: int = _key(0, "accelerator index on GPU / Ascend")
    mode: str = _key("graph", "MindSpore execution mode", ("graph", "pynative"))
    num_threads: int | None = _key(None, "CPU threads; null = all available cores")


@dataclass
class OutputConfig:
    dir: str = _key("outputs", "where models, results and pictures are written")
    overwrite: bool = _key(False, "rebuild memory banks that already exist (else reuse them)")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    coreset: CoresetConfig = field(default_factory=CoresetConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict, as written to ``config.yaml`` next to outputs."""
        return dataclasses.asdict(self)


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _check_value(path: str, value: Any, annotation: Any, choices: tuple | None) -> Any:
    """Return ``value`` as ``annotation`` or raise ConfigError saying what was expected."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _check_value(path, value, inner, choices)
    if origin is list:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]  # a single category on the command line
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list; got {value!r}.")
        return [_check_value(path, item, args[0], choices) for item in value]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[annotation]
    if not ok:
        expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        raise ConfigError(f"{path} must be {expected[annotation]}; got {value!r}.")
    if annotation is float:
        value = float(value)
    if choices and value not in choices:
        raise ConfigError(f"{path} must be one of {', '.join(map(str, choices))}; got {value!r}.")
    return value


def _apply(config: Config, updates: dict[str, Any], source: str) -> None:
    if not isinstance(updates, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections; got {type(updates).__name__}."
        )
    sections = _sections()
    for section_name, values in updates.items():
        if section_name not in sections:
            raise ConfigError(
                f"{source}: unknown section {section_name!r}; valid sections: "
                f"{', '.join(sections)}."
            )
        if not isinstance(values, dict):
            raise ConfigError(
                f"{source}: section {section_name!r} must be a mapping of keys; got {values!r}."
            )
        section = getattr(config, section_name)
        fields = {f.name: f for f in dataclasses.fields(section)}
        hints = typing.get_type_hints(type(section))
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(
                    f"{source}: unknown key {section_name}.{key}; valid keys in "
                    f"{section_name}: {', '.join(fields)}."
                )
            checked = _check_value(
                f"{section_name}.{key}", value, hints[key], fields[key].metadata.get("choices")
            )
            setattr(section, key, checked)


def _validate(config: Config) -> None:
    """Cross-key and range checks that single-key type checks cannot express."""
    positive = {
        "data.resize": config.data.resize,
        "data.batch_size": config.data.batch_size,
        "features.layer_dim": config.features.layer_dim,
        "features.target_dim": config.features.target_dim,
        "scoring.num_neighbours": config.scoring.num_neighbours,
        "scoring.reweight_neighbours": config.scoring.reweight_neighbours,
    }
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1; got {value}.")
    if config.data.num_workers < 0:
        raise ConfigError(f"data.num_workers must be 0 or more; got {config.data.num_workers}.")
    if config.data.crop is not None and not 0 < config.data.crop <= config.data.resize:
        raise ConfigError(
            f"data.crop must be between 1 and data.resize ({config.data.resize}); got "
            f"{config.data.crop}. Lower the crop or raise the resize."
        )
    if config.data.crop is None and config.data.resize_mode != "square":
        raise ConfigError(
            "data.crop: null needs data.resize_mode: square (every image must reach the network "
            "at one size); set a crop or use square resizing."
        )
    if config.features.patch_size < 1 or config.features.patch_size % 2 == 0:
        raise ConfigError(
            f"features.patch_size must be a positive odd number; got {config.features.patch_size}."
        )
    ratio, count = config.coreset.ratio, config.coreset.count
    if count is None and (ratio is None or not 0 < ratio <= 1):
        raise ConfigError(
            f"coreset.ratio must be in (0, 1] when coreset.count is null; got {ratio!r}."
        )
    if count is not None and count < 1:
        raise ConfigError(f"coreset.count must be at least 1 or null; got {count}.")
    if config.coreset.projection_dim is not None and config.coreset.projection_dim < 1:
        raise ConfigError(
            f"coreset.projection_dim must be at least 1 or null; got "
            f"{config.coreset.projection_dim}."
        )
    if config.scoring.sigma < 0:
        raise ConfigError(
            f"scoring.sigma must be 0 (no smoothing) or more; got {config.scoring.sigma}."
        )
    if not 0 < config.evaluation.pro_fpr_limit <= 1:
        raise ConfigError(
            f"evaluation.pro_fpr_limit must be in (0, 1]; got {config.evaluation.pro_fpr_limit}."
        )
    scale = config.evaluation.map_scale
    if scale is not None and (len(scale) != 2 or not scale[0] < scale[1]):
        raise ConfigError(
            f"evaluation.map_scale must be [low, high] with low < high, or null; got {scale!r}."
        )
    if not config.data.categories:
        raise ConfigError("data.categories is empty; name at least one category.")
    if len(set(config.data.categories)) != len(config.data.categories):
        raise ConfigError(f"data.categories lists a category twice: {config.data.categories}.")


def parse_override(text: str) -> dict[str, dict[str, Any]]:
    """Turn ``section.key=value`` into ``{section: {key: value}}``; the value is read as YAML."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(
            f"override {text!r} is not of the form section.key=value, e.g. coreset.ratio=0.01."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error}).") from None
    return {section: {key: value}}


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then each override in order; validated.

    Raises:
        ConfigError: unreadable file, unknown section or key, wrong type, bad value.
    """
    config = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist; pass one of the files under configs/, e.g. "
                "configs/mvtec.yaml."
            )
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        _apply(config, content or {}, str(path))
    for text in overrides:
        _apply(config, parse_override(text), f"override {text!r}")
    _validate(config)
    return config


def config_from_dict(values: dict[str, Any]) -> Config:
    """Rebuild a validated Config from ``Config.to_dict()`` output (e.g. saved metadata)."""
    config = Config()
    _apply(config, values, "saved config")
    _validate(config)
    return config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--config`` and ``overrides`` arguments every entry script accepts."""
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        help="YAML config file (see configs/); built-in defaults when omitted",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="override any config key, e.g. data.categories=[bottle,screw] coreset.ratio=0.01",
    )


def markdown_table() -> str:
    """Every key with its type, default and meaning, as the README documents them."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    defaults = Config()
    for section_name, section_type in _sections().items():
        hints = typing.get_type_hints(section_type)
        for item in dataclasses.fields(section_type):
            default = getattr(getattr(defaults, section_name), item.name)
            type_name = str(hints[item.name]).replace("typing.", "").replace("NoneType", "None")
            type_name = type_name.replace("<class '", "").replace("'>", "").replace("|", "or")
            if isinstance(default, list) and len(default) > 4:
                default_text = f"all {len(default)} MVTec AD categories"
            else:
                default_text = yaml.safe_dump(default, default_flow_style=True).strip()
                default_text = default_text.removesuffix("...").strip()
            meaning = item.metadata["help"]
            if item.metadata.get("choices"):
                meaning += f" (one of: {', '.join(map(str, item.metadata['choices']))})"
            lines.append(
                f"| `{section_name}.{item.name}` | {type_name} | `{default_text}` | "
                f"{meaning.replace('|', '/')} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.config [--config F] [overrides] [--markdown]``: show the resolved config."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    add_config_arguments(parser)
    parser.add_argument("--markdown", action="store_true", help="print the key table instead")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table())
        return 0
    print(yaml.safe_dump(load_config(args.config, args.overrides).to_dict(), sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
