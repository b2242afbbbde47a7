"""The package's layering: model → equilibrium → diagnostics → rule → gradient →
training. A module imports only from its own layer or lower ones, so a new rule
or a new diagnostic is built on the solve layer, never on another rule."""

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "holoode"

# Module (dotted, relative to the package) → layer; a package stands for its
# modules. Lower numbers are lower layers.
LAYERS = {
    "_misc": 0,
    "_activations": 0,
    "_pooling": 0,
    "_costs": 0,
    "_solution": 0,
    "_circle": 0,
    "_model": 1,
    "nn": 1,
    "_holomorphy": 1,
    "_equilibrium": 2,
    "_noise": 3,
    "_stability": 3,
    "_relaxation": 3,
    "_online": 3,
    "_learning": 4,
    "_gradient": 5,
    "data": 6,
    "_training": 6,
    "_cli": 7,
    "__init__": 8,
}


def _layer(module: str) -> int:
    head = module.split(".")[0]
    assert head in LAYERS, f"holoode.{module} has no layer in tests/test_layers.py"
    return LAYERS[head]


def _imports(path: Path, root: Path) -> list[str]:
    """The package modules a file imports (relative imports, resolved)."""
    here = path.relative_to(root).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(here[: len(here) - node.level])
            target = base + (node.module.split(".") if node.module else [])
            if target:
                found.append(".".join(target))
            else:  # `from . import x` at the package root
                found.extend(alias.name for alias in node.names)
    return found


def _violations(root: Path) -> list[str]:
    wrong = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for target in _imports(path, root):
            if _layer(target) > _layer(module):
                wrong.append(f"holoode.{module} imports holoode.{target}")
    return wrong


def test_no_module_imports_from_a_higher_layer():
    wrong = _violations(PACKAGE)
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


def test_the_layer_check_catches_a_diagnostic_that_imports_a_rule(tmp_path):
    (tmp_path / "_learning").mkdir()
    (tmp_path / "_learning" / "base.py").write_text("from .._model import parameters\n")
    (tmp_path / "_stability.py").write_text(
        "import math\nfrom ._circle import full_circle\n"
        "from ._learning.base import solve_batch\n"
    )
    assert _violations(tmp_path) == [
        "holoode._stability imports holoode._learning.base"
    ]
