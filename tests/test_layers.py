"""The layers' rules, checked on the source: data flows one way, between the layers and
between the rooms inside a layer, and serving needs nothing that only training uses."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# features -> training -> models -> serving; experiments train through models, below serving
ORDER = ("features", "training", "models", "experiments", "serving")
TRAINING_ONLY = ("optuna", "matplotlib", "shap", "pyreadr", "econml", "statsmodels")
# The rooms of the layers that have them, lowest first: a room imports only from itself and
# the rooms before it (docs/architecture.md says what each holds). A module at the top of a
# layer is a room of its own.
ROOMS = {
    "features": (
        "core",
        "contract",
        "spec",
        "residence",
        "storage",
        "tasks",
        "compute",
        "synth",
        "adapters",
        "indicators",
        "cli",
    ),
    "serving": (
        "storage",
        "access",
        "scoring",
        "state",
        "api",
        "web",
        "app",
        "batch",
        "processes",
        "cli",
    ),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", ORDER)
def test_a_lower_layer_never_imports_a_higher_one(layer):
    higher = set(ORDER[ORDER.index(layer) + 1 :])
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & higher)
        for p in (ROOT / layer).rglob("*.py")
        if _imports(p) & higher
    }
    assert offenders == {}


def _modules(path: Path) -> set[str]:
    """Every module an import names, whole (`from a.b import c` names a.b and a.b.c)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def _room(layer: str, path: Path) -> str:
    return path.relative_to(ROOT / layer).parts[0].removesuffix(".py")


@pytest.mark.parametrize("layer", sorted(ROOMS))
def test_every_room_is_placed_and_imports_only_the_rooms_below_it(layer):
    order = ROOMS[layer]
    present = {_room(layer, p) for p in (ROOT / layer).rglob("*.py") if p.name != "__init__.py"} - {
        "__pycache__"
    }
    assert present == set(order), "a room that is not in ROOMS, or one that is gone"
    upward = {}
    for path in (ROOT / layer).rglob("*.py"):
        own = _room(layer, path)
        if own not in order:
            continue
        higher = {
            m.split(".")[1]
            for m in _modules(path)
            if m.startswith(f"{layer}.") and m.split(".")[1] in order
        }
        higher = {r for r in higher if order.index(r) > order.index(own)}
        if higher:
            upward[str(path.relative_to(ROOT))] = sorted(higher)
    assert upward == {}


BLOCKER = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {TRAINING_ONLY!r}:
            raise ImportError("training-only module imported by serving: " + name)
sys.meta_path.insert(0, Block())
"""


def python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_serving_runs_without_the_training_only_dependencies():
    """Every serving module imports, the service app assembles, and a served effects model
    loads and answers, with optuna, matplotlib, shap, pyreadr, EconML and statsmodels
    unimportable: a serving install does without the `train` extra."""
    script = BLOCKER + (
        "import serving.cli.main, serving.app, serving.batch.runner, serving.state.service\n"
        "import serving.batch.roster_io\n"
        "import models.registry, models.pyfunc, models.tracking, models.effects_model\n"
        "import lightgbm, numpy, pathlib, tempfile\n"
        "X = numpy.random.default_rng(0).normal(size=(200, 3))\n"
        "b = lightgbm.train({'verbose': -1, 'min_data_in_leaf': 5}, "
        "lightgbm.Dataset(X, X[:, 0]), 5)\n"
        "e = models.effects_model\n"
        "o = e.OptionFacts('x', [0, 1], (-0.1, -0.2, 0.0), 5, True, '', 1.0, b)\n"
        "m = e.EffectsModel('relapse', '1', ['a', 'b', 'c'], 0.1, {'x': o})\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "m.save(d)\n"
        "got = e.EffectsModel.load(d).changes(X[:4], X[:4, 2])['x']\n"
        "assert numpy.allclose(got, b.predict(numpy.column_stack([X[:4, :2], X[:4, 2]])))\n"
        "from serving.batch.histogram import histogram_svg\n"
        "from serving.batch.tracking import log_batch_run\n"
        "models.tracking.configure()\n"
        "print('ok')\n"
    )
    r = python(script)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_roster_mistake_is_reported_before_the_model_stack_is_imported():
    """Checking a roster job's settings imports neither LightGBM nor MLflow, so a mistake
    fails in a moment."""
    script = (
        "import sys\n"
        "from serving.batch.job import RosterJob\n"
        "from serving.cli.main import app\n"
        "print(sorted({'lightgbm', 'mlflow'} & set(sys.modules)))\n"
    )
    r = python(script)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


LONGEST_BODY = 80  # lines: past that, a part wants a name of its own


def test_no_function_is_longer_than_a_reader_can_hold():
    """Every function of the layers, the benchmarks and the docs' scripts keeps its body (after
    its docstring; a command's long signature is its help, not its length) to LONGEST_BODY
    lines. The tests' scenarios read top to bottom and are left out."""
    long = {}
    for folder in (*ORDER, "benchmarks", "docs"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                body = node.body
                if len(body) > 1 and isinstance(body[0], ast.Expr):
                    body = body[1:]  # the docstring
                lines = (node.end_lineno or 0) - body[0].lineno + 1
                if lines > LONGEST_BODY:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert long == {}
