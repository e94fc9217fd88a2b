"""The training loop's structure: parts composed through public interfaces, none of them a god class."""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "distral_tf")
# The modules of the training loop and its parts.
TRAINING_MODULES = ("trainer", "backends", "distributed", "run_directory", "run_setup", "run_summaries",
                    "worker_threads", "trained_run", "preflight")
MAX_CLASS_LINES = 300


def _modules():
    for root, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path) as f:
                    yield os.path.relpath(path, REPO), ast.parse(f.read())


def test_no_module_imports_a_private_name_of_another():
    private = [(path, node.module, alias.name) for path, tree in _modules() for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distral_tf")
               for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert private == []


def test_no_class_extends_the_trainer():
    subclasses = [(path, node.name) for path, tree in _modules() for node in ast.walk(tree)
                  if isinstance(node, ast.ClassDef)
                  and any(ast.unparse(base).split(".")[-1] == "Trainer" for base in node.bases)]
    assert subclasses == []


def test_the_classes_of_the_training_loop_are_small():
    for name in TRAINING_MODULES:
        with open(os.path.join(PACKAGE, f"{name}.py")) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno - node.lineno + 1 <= MAX_CLASS_LINES, (name, node.name)
