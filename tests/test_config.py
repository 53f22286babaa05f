"""The configuration system: files, overrides, validation, the documented key table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from src.config import Config, config_from_dict, load_config, markdown_table
from src.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["mvtec.yaml", "mvtec_zoo.yaml", "demo.yaml"])
def test_shipped_configs_load(name):
    config = load_config(ROOT / "configs" / name)
    assert config.data.categories


def test_overrides_apply_in_order_and_parse_yaml_values():
    config = load_config(
        ROOT / "configs" / "mvtec.yaml",
        [
            "coreset.ratio=0.01",
            "data.categories=[bottle,screw]",
            "backbone.checkpoint=w.ckpt",
            "data.crop=null",
            "data.resize_mode=square",
            "coreset.ratio=0.02",
        ],
    )
    assert config.coreset.ratio == 0.02
    assert config.data.categories == ["bottle", "screw"]
    assert config.backbone.checkpoint == "w.ckpt"
    assert config.data.crop is None


def test_single_category_override_becomes_list():
    assert load_config(None, ["data.categories=bottle"]).data.categories == ["bottle"]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.bogus=1", "valid keys in data: root, categories"),
        ("nonsense.key=1", "valid sections: data, backbone"),
        ("coreset.ratio=abc", "coreset.ratio must be a number"),
        ("coreset.ratio=1.5", "coreset.ratio must be in (0, 1]"),
        ("features.aggregation=sum", "one of adaptive, concat"),
        ("data.crop=300", "data.crop must be between 1 and data.resize"),
        ("data.batch_size=0", "data.batch_size must be at least 1"),
        ("runtime.device_target=TPU", "one of CPU, GPU, Ascend"),
        ("scoring.reweight=maybe", "true or false"),
        ("noequals", "section.key=value"),
        ("data.crop=null", "needs data.resize_mode: square"),
        ("data.categories=[a,a]", "twice"),
    ],
)
def test_bad_values_are_refused_with_a_useful_message(override, fragment):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert fragment in str(error.value)


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("coreset:\n  raito: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key coreset.raito"):
        load_config(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_round_trip_through_saved_dict():
    config = load_config(ROOT / "configs" / "mvtec_zoo.yaml", ["coreset.count=100"])
    text = yaml.safe_dump(config.to_dict())
    assert config_from_dict(yaml.safe_load(text)) == config


def test_key_table_documents_every_key_and_readme_has_it():
    table = markdown_table()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for section, values in Config().to_dict().items():
        for key in values:
            assert f"`{section}.{key}`" in table
            assert f"`{section}.{key}`" in readme, f"README does not document {section}.{key}"
