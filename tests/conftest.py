import os
from pathlib import Path

import pytest

from synth import build_tiny_yamnet, make_dataset

ROOT = Path(__file__).resolve().parents[1]


def shared_path(env: str, default: str) -> Path | None:
    """A ../shared resource from its env var or the default location; None if absent."""
    p = Path(os.environ.get(env) or ROOT.parent / default)
    return p if p.exists() else None


@pytest.fixture(scope="session")
def tiny_yamnet(tmp_path_factory) -> Path:
    return build_tiny_yamnet(tmp_path_factory.mktemp("tiny") / "yamnet")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own embedding cache; YAMCAP_YAMNET is left to the tests that set it."""
    monkeypatch.setenv("YAMCAP_CACHE", str(tmp_path / "cache"))


def require_shared(env: str, default: str, what: str) -> Path:
    p = shared_path(env, default)
    if p is None:
        pytest.skip(f"{what} not available (set {env} or put ../shared beside the repo)")
    return p


@pytest.fixture(scope="session")
def real_yamnet() -> Path:
    return require_shared("YAMCAP_YAMNET", "shared/models/yamnet", "real YAMNet")


@pytest.fixture(scope="session")
def real_data() -> Path:
    return require_shared("YAMCAP_DATA", "shared/data/capuchin", "real data")
