from pathlib import Path

import pytest

from yamnet_capuchin.config import DEFAULT_CONFIG_PATH, Config
from yamnet_capuchin.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_toml_mirrors_dataclasses():
    assert Config.load(DEFAULT_CONFIG_PATH) == Config()
    assert (ROOT / "configs" / "default.toml").resolve() == DEFAULT_CONFIG_PATH.resolve()


def test_default_config_is_package_data():
    """pyproject installs yamnet_capuchin/configs/*.toml with the package: the file is there."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["yamnet_capuchin"]
    assert "configs/*.toml" in patterns
    assert DEFAULT_CONFIG_PATH.relative_to(ROOT / "yamnet_capuchin").match("configs/*.toml")


def test_every_config_file_loads():
    for path in (ROOT / "configs").glob("*.toml"):
        Config.load(path)


def test_overrides_convert_types_and_roundtrip(tmp_path):
    cfg = Config.load(None, {"head.dropout": "0.5", "augment.enabled": "false", "seed": "7",
                             "data.backgrounds": '["a", "b"]'})
    assert cfg.head.dropout == 0.5 and cfg.augment.enabled is False and cfg.seed == 7
    assert cfg.data.backgrounds == ["a", "b"]
    cfg.save(tmp_path / "c.toml")
    assert Config.load(tmp_path / "c.toml") == cfg


@pytest.mark.parametrize("key,value,match", [
    ("head.nope", 1, "unknown setting"), ("nope.x", 1, "unknown setting"),
    ("head.hidden_units", "many", "expects int"), ("augment.enabled", "maybe", "expects bool"),
])
def test_bad_overrides(key, value, match):
    with pytest.raises(ConfigError, match=match):
        Config.load(None, {key: value})


def test_bad_file(tmp_path):
    (tmp_path / "bad.toml").write_text("[head\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "missing.toml")
