"""The package's structural rules, checked on its source: small classes, no reaching into private names."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("distral_tf", "baselines", "flags")
MAX_CLASS_LINES = 300


def _modules() -> list[pathlib.Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def long_classes(tree: ast.Module, limit: int = MAX_CLASS_LINES) -> list[str]:
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > limit]


def private_imports(tree: ast.Module) -> list[str]:
    """``from m import _name`` and ``m._name`` where ``m`` is one of the project's modules, imported.

    (The standard library's documented underscored names, such as ``os._exit``, are not the project's.)
    """
    imported, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.asname or a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        elif isinstance(node, ast.ImportFrom) and (node.level or node.module.split(".")[0] in PACKAGES):
            imported |= {a.asname or a.name for a in node.names}
            found += [f"from {node.module} import {a.name}" for a in node.names if _is_private(a.name)]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _is_private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in imported):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def private_assignments(tree: ast.Module) -> list[str]:
    """Assignments to ``other._name``: ``self._name`` and ``cls._name`` are a class's own business."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for t in ast.walk(target):
                if (isinstance(t, ast.Attribute) and _is_private(t.attr)
                        and not (isinstance(t.value, ast.Name) and t.value.id in ("self", "cls"))):
                    found.append(f"line {t.lineno}: {ast.unparse(t)}")
    return found


def test_the_rules_see_the_package():
    names = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert {"distral_tf/run.py", "baselines/a3c.py", "flags/cli.py"} <= names and len(names) > 40


def test_the_rules_catch_what_they_forbid():
    tree = ast.parse("from distral_tf.training.trainer import _Gate\nfrom distral_tf import rundir\n"
                     "import os\nos._exit(0)\nrundir._lock()\nother._state = 1\n"
                     "self._ok = 2\nclass Big:\n" + "    x = 1\n" * 301)
    assert private_imports(tree) == ["from distral_tf.training.trainer import _Gate", "rundir._lock"]
    assert private_assignments(tree) == ["line 6: other._state"]
    assert long_classes(tree) == ["Big (302 lines)"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_keeps_to_the_rules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = {"classes over 300 lines": long_classes(tree), "private names of other modules": private_imports(tree),
                "assignments to other objects' private attributes": private_assignments(tree)}
    problems = {k: v for k, v in problems.items() if v}
    assert not problems, f"{path.relative_to(ROOT)}: {problems}"


def test_no_class_extends_the_trainer():
    """The trainer is composed of parts; other wirings (Ray) compose the same parts instead of overriding it."""
    subclasses = [f"{path.relative_to(ROOT)}: {node.name}" for path in _modules()
                  for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
                  and any(ast.unparse(base).split(".")[-1] == "Trainer" for base in node.bases)]
    assert subclasses == []
