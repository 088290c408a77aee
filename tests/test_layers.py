"""The house's layering (ARCHITECTURE.md): imports point inward, tasks/ and training/ never import
each other, models/ imports only torch, the registry imports no task. Walks every module's imports,
including the lazy ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dlcli"

# Higher may import lower (or its own package); equal ranks of different packages are peers that
# must not import each other (tasks <-> training).
RANK = {
    "errors": 0, "__init__": 0, "runtime_record": 0,
    "atomic": 1, "offline": 1, "progress": 1, "device": 1, "models": 1, "text": 1, "results": 1,
    "media": 2, "domain": 2, "plots": 2,
    "weights": 3,
    "data": 4,
    "evaluation": 5,
    # export/ (exporting, quantising, running ONNX) needs only errors and results; tasks/ use it
    # for --model-file and --runtime onnx, so it sits below them.
    "tasks": 6, "training": 6, "doctor": 6, "export": 5,
    "render": 7, "catalog": 7, "video": 2,
    "cli": 8, "__main__": 9,
}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dlcli":  # `from dlcli import render` is a module; __version__ is the root
                found += [(node.lineno, "dlcli" if a.name.startswith("__") else f"dlcli.{a.name}") for a in node.names]
            elif node.module.startswith("dlcli."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("dlcli")]
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts)
        mine = _package_of(module)
        if mine not in RANK:
            bad.append(f"{module}: package {mine!r} has no rank in tests/test_layers.py")
            continue
        for line, target in _imports(path):
            theirs = _package_of(target)
            if theirs == mine:
                continue
            if theirs not in RANK:
                bad.append(f"{module}:{line} imports {target} (no rank)")
            elif RANK[theirs] >= RANK[mine]:
                bad.append(f"{module}:{line} imports {target} ({mine} may not import {theirs})")
        if mine == "models":
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for n in names:
                    if n.split(".")[0] not in ("torch", "torchvision", "__future__", "math", "typing", "collections",
                                               "dataclasses", "dlcli"):
                        bad.append(f"{module}:{node.lineno} imports {n} (models/ imports only torch and torchvision)")
    return bad


def test_no_import_points_up_or_sideways() -> None:
    assert violations() == []


def test_the_check_catches_a_sideways_import(tmp_path: Path) -> None:
    """The walker itself must fail on tasks -> training and on a lazy upward import."""
    root = tmp_path / "dlcli"
    for sub in ("tasks", "training", "weights"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "tasks" / "detect.py").write_text("from dlcli.training.detect import x\n")
    (root / "weights" / "registry.py").write_text("def f():\n    import dlcli.tasks.classify\n")
    (root / "training" / "ok.py").write_text("from dlcli.weights import registry\n")
    found = violations(root)
    assert any("tasks.detect:1 imports dlcli.training.detect" in v for v in found)
    assert any("weights.registry:2 imports dlcli.tasks.classify" in v for v in found)
    assert not any("training.ok" in v for v in found)


@pytest.mark.parametrize("module", ["dlcli.weights.registry", "dlcli.weights.presets"])
def test_registry_is_passive(module: str) -> None:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    assert not [t for _, t in _imports(path) if t.startswith(("dlcli.tasks", "dlcli.catalog"))]
