"""The documentation: the site builds with `--strict`, every tutorial runs, every
public name has an API entry, and benchmark results reach the pages."""

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import holoode


ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONUNBUFFERED": "1"}


def _run(args, cwd, timeout):
    proc = subprocess.run(
        args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    # Started from another folder on purpose: paths must not depend on the cwd.
    _run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q"]
        + ["-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=tmp_path,
        timeout=300,
    )
    rules = (site / "api" / "rules" / "index.html").read_text()
    assert 'id="holoode.HolomorphicEP"' in rules
    # The signature Equinox generates is shown (added by docs/griffe_equinox.py).
    assert "num_points" in rules.split('id="holoode.HolomorphicEP"')[1][:20000]
    # Tutorial pages show their scripts verbatim (pymdownx.snippets).
    for script in TUTORIALS:
        page = (site / "tutorials" / script.stem / "index.html").read_text()
        last = [line for line in script.read_text().splitlines() if line.strip()][-1]
        words = re.findall(r"\w+", last)
        assert all(w in page for w in words), (script.name, last)
    # Every benchmark figure is published next to the pages.
    for png in (ROOT / "benchmarks" / "results").glob("*.png"):
        assert (site / "benchmark-results" / png.name).is_file(), png.name


@pytest.mark.slow
@pytest.mark.parametrize("script", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(script, tmp_path):
    """Each tutorial asserts its own results (errors, losses) while it runs."""
    _run([sys.executable, str(script)], cwd=tmp_path, timeout=600)


def _documented() -> set[str]:
    names = set()
    for page in (DOCS / "api").glob("*.md"):
        names.update(re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), re.MULTILINE))
    return names


def _public(module, prefix: str) -> set[str]:
    return {
        f"{prefix}.{name}"
        for name in dir(module)
        if not name.startswith("_") and not inspect.ismodule(getattr(module, name))
    }


def test_every_public_name_has_an_api_entry():
    public = _public(holoode, "holoode") | _public(holoode.nn, "holoode.nn")
    data = getattr(holoode, "data", None)
    if inspect.ismodule(data):
        public |= _public(data, "holoode.data")
    missing = sorted(public - _documented())
    assert not missing, (
        f"public names without an API entry: {missing}; add `::: NAME` to a page "
        "in docs/api/"
    )


def test_every_tutorial_is_on_a_page_and_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for script in TUTORIALS:
        page = script.with_suffix(".md")
        assert page.is_file(), f"{script.name} has no page {page.name}"
        include = f'--8<-- "docs/tutorials/{script.name}"'
        # `{ .python }`, not `python`: ruff formats ```python blocks in Markdown and
        # would turn the include line into `--8 < --"..."`.
        assert f'``` {{ .python title="docs/tutorials/{script.name}" }}\n{include}' in (
            page.read_text()
        )
        assert f"tutorials/{page.name}" in nav, page.name


def _hooks():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_directives(tmp_path):
    hooks = _hooks()
    (tmp_path / "solvers.md").write_text(
        "| solver | error |\n|---|---|\n| a | 1e-3 |\n"
    )
    (tmp_path / "solvers_scatter.png").write_bytes(b"png")
    (tmp_path / "solvers.json").write_text("{}")  # not a table or a figure
    (tmp_path / "depth.png").write_bytes(b"png")
    page = (
        "<!-- results: solvers -->\n\n<!-- results: exactness -->\n\n"
        "<!-- results: unlisted -->\n"
    )
    out = hooks.expand(page, "tutorials", results=tmp_path)
    # The table is inlined before the figure, the figure linked relative to the page.
    assert out.index("| a | 1e-3 |") < out.index(
        "](../benchmark-results/solvers_scatter.png)"
    )
    # A missing benchmark is a visible warning naming the script to run.
    assert '!!! warning "No results for `exactness` yet"' in out
    assert "python benchmarks/exactness.py" in out
    # Files no directive showed are listed and shown, never silently dropped.
    unlisted = out.split("Result files not shown above:")[1]
    assert "`depth.png`" in unlisted and "solvers" not in unlisted
    assert "json" not in out
    assert "<!-- results:" not in out
