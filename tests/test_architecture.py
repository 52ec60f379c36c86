"""The package's structure: imports run one way, and detectors meet one contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from yamnet_capuchin.detectors import DETECTORS, Detector, detector_class
from yamnet_capuchin.errors import ModelError

PACKAGE = Path(__file__).resolve().parents[1] / "yamnet_capuchin"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports, at any depth (inside functions too).
    ``from . import name`` counts as an import of the submodule ``name`` (not of the package
    ``.``, which Python loads first for any submodule)."""
    me = module_name(path)
    base = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - node.level + 1]
                target = ".".join(stem + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & modules
            found.update(submodules if submodules else {target} if target.startswith("yamnet_capuchin") else set())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("yamnet_capuchin"))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = {t for t in package_imports(path, set(modules)) if t in modules and t != name}
        graph[name] = targets - {"yamnet_capuchin"} if name != "yamnet_capuchin" else targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_even_inside_functions():
    graph = import_graph()
    assert "yamnet_capuchin.detectors" in graph and len(graph) > 30
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_registered_detectors_meet_the_contract():
    for kind in DETECTORS:
        cls = detector_class(kind)
        assert cls.REQUIRED_META and callable(cls.from_dir)
        for name in ("frame_scores", "clip_score", "fingerprint", "frame_count"):
            assert callable(getattr(cls, name)), (kind, name)
    with pytest.raises(ModelError, match="unknown model kind 'nope'"):
        detector_class("nope")


def test_exported_and_yamnet_detectors_are_detectors(tiny_yamnet, tmp_path):
    from test_reliability import random_head
    from yamnet_capuchin.backbones import YamnetBackbone
    from yamnet_capuchin.config import Config
    from yamnet_capuchin.export import export_model
    from yamnet_capuchin.model import YamnetDetector
    from yamnet_capuchin.detectors import load_model

    det = YamnetDetector(random_head(), 0.5, Config(), {}, YamnetBackbone(str(tiny_yamnet)))
    assert isinstance(det, Detector)
    export_model(det, tmp_path / "sm", "savedmodel")
    assert isinstance(load_model(tmp_path / "sm"), Detector)
