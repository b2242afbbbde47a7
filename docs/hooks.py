"""MkDocs hooks: bring the benchmark results into the site.

The benchmark scripts write figures (`*.png`) and tables (`*.md`) to
`benchmarks/results/`, outside `docs/`. This hook publishes those files under
`benchmark-results/` and expands two directives in any page:

- `<!-- results: STEM -->` becomes every table `STEM*.md` (inlined) and figure
  `STEM*.png` (embedded) in `benchmarks/results/`, tables first; if there is none,
  a visible warning naming the script to run.
- `<!-- results: unlisted -->` lists the result files that no directive on the page
  showed, so that a new benchmark's output is never silently left out.

Numbers on the page therefore always come from the files the scripts wrote.
"""

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SITE_DIR = "benchmark-results"
KINDS = (".md", ".png")
_DIRECTIVE = re.compile(r"^<!-- results: (?P<stem>[\w*.-]+) -->[ \t]*$", re.MULTILINE)


def result_files(results: Path = RESULTS) -> list[Path]:
    """The tables and figures in the results folder, sorted by name."""
    if not results.is_dir():
        return []
    return sorted(p for p in results.iterdir() if p.suffix in KINDS and p.is_file())


def _matches(path: Path, stem: str) -> bool:
    return path.stem == stem or path.stem.startswith(stem + "_")


def _block(files: list[Path], page_dir: str) -> str:
    parts = []
    for path in sorted(files, key=lambda p: (p.suffix != ".md", p.name)):
        if path.suffix == ".md":
            parts.append(path.read_text().strip())
        else:
            link = posixpath.relpath(f"{SITE_DIR}/{path.name}", page_dir or ".")
            parts.append(f"![{path.stem}]({link})")
        parts.append(f"*Source: `benchmarks/results/{path.name}`.*")
    return "\n\n".join(parts)


def _missing(stem: str) -> str:
    return (
        f'!!! warning "No results for `{stem}` yet"\n\n'
        f"    `benchmarks/results/` holds no `{stem}*.md` or `{stem}*.png`. Run\n"
        f"    `python benchmarks/{stem}.py` (or `python -m benchmarks`) to create "
        "them, then rebuild the docs."
    )


def expand(markdown: str, page_dir: str, results: Path = RESULTS) -> str:
    """Replace the results directives of one page (see the module docstring).

    `page_dir` is the page's folder relative to `docs/` (for relative links).
    """
    available = result_files(results)
    shown: set[Path] = set()

    def replace(match):
        stem = match.group("stem")
        if stem == "unlisted":
            return match.group(0)  # expanded after all the others
        files = [p for p in available if _matches(p, stem)]
        shown.update(files)
        return _block(files, page_dir) if files else _missing(stem)

    markdown = _DIRECTIVE.sub(replace, markdown)

    def unlisted(match):
        if match.group("stem") != "unlisted":
            return match.group(0)
        rest = [p for p in available if p not in shown]
        if not rest:
            return "Every file in `benchmarks/results/` is shown above."
        names = ", ".join(f"`{p.name}`" for p in rest)
        return f"Result files not shown above: {names}.\n\n" + _block(rest, page_dir)

    return _DIRECTIVE.sub(unlisted, markdown)


def on_config(config):
    # Tutorials include their scripts by paths relative to the repository root,
    # wherever `mkdocs` is started from.
    config["mdx_configs"]["pymdownx.snippets"]["base_path"] = [str(ROOT)]
    return config


def on_files(files, config):
    for path in result_files():
        if path.suffix == ".md":
            continue  # tables are inlined, never pages of their own
        files.append(
            File.generated(config, f"{SITE_DIR}/{path.name}", abs_src_path=str(path))
        )
    return files


def on_page_markdown(markdown, page, config, files):
    if "<!-- results: " not in markdown:
        return markdown
    return expand(markdown, posixpath.dirname(page.file.src_uri))


def on_serve(server, config, builder):
    if RESULTS.is_dir():
        server.watch(str(RESULTS))
    return server
