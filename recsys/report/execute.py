"""Run the book's chapters the way ``quarto render`` executes them, without Quarto.

For each chapter Quarto expands ``{{< include >}}`` shortcodes, turns the document into a
notebook whose code cells are the ``{python}`` blocks (cell options in ``#|`` comments), and
executes it on a Jupyter kernel in the chapter's folder, stopping at the first error. This
module does the same with nbformat and nbclient, so tests can check what a chapter computes,
and that its figures and tables are labelled, captioned and cited, where Quarto is absent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import nbformat
import yaml
from nbclient import NotebookClient

from recsys.report.charts import CHART_CLASS
from recsys.report.context import ENV_PROJECT_ROOT, PROJECT_FILE
from recsys.report.prepare import prepare

KERNEL: Final = "python3"
MAX_PAGE_BYTES: Final = 1_500_000
INCLUDE_RE: Final = re.compile(r"^\{\{<\s*include\s+(\S+?)\s*>\}\}\s*$")
FENCE_RE: Final = re.compile(r"^(`{3,})\s*\{python\b[^}]*\}\s*$")
OPTION_RE: Final = re.compile(r"^#\s*\| ?")
# Quarto's own pattern for inline expressions such as `{python} x`.
INLINE_RE: Final = re.compile(r"(?:^|[^`])`\{python\}[ \t]([^`]+)`", re.MULTILINE)
EXTERNAL_RE: Final = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//|cdn|jsdelivr""",
                                re.IGNORECASE)


@dataclass(frozen=True)
class CodeCell:
    """A ``{python}`` block: its source (option lines included) and its parsed options."""

    source: str
    options: dict[str, Any]

    @property
    def label(self) -> str:
        return str(self.options.get("label", ""))


@dataclass
class Chapter:
    """A chapter with its includes expanded, split into prose and code cells.

    ``parts`` keeps the document order: each item is a prose string or a :class:`CodeCell`.
    """

    path: Path
    front_matter: dict[str, Any]
    parts: list[str | CodeCell]

    @property
    def cells(self) -> list[CodeCell]:
        return [part for part in self.parts if isinstance(part, CodeCell)]

    @property
    def prose(self) -> str:
        return "\n".join(part for part in self.parts if isinstance(part, str))


@dataclass
class ExecutedChapter:
    """A chapter and the outputs of each of its code cells, in order."""

    chapter: Chapter
    outputs: list[list[dict[str, Any]]] = field(repr=False)

    def cell_outputs(self) -> Iterator[tuple[CodeCell, list[dict[str, Any]]]]:
        yield from zip(self.chapter.cells, self.outputs, strict=True)

    def charts(self) -> list[tuple[str, str]]:
        """``(label, html)`` of every chart the chapter drew with the offline renderer."""
        return [(cell.label, html) for cell, outputs in self.cell_outputs()
                for html in _mime(outputs, "text/html") if f'class="{CHART_CLASS}"' in html]

    def tables(self) -> list[tuple[str, str]]:
        """``(label, markdown)`` of every Markdown pipe table the chapter displayed."""
        return [(cell.label, text) for cell, outputs in self.cell_outputs()
                for text in _mime(outputs, "text/markdown") if text.lstrip().startswith("|")]

    def page_bytes(self) -> int:
        """The size of every output, about what the chapter adds to its page."""
        return sum(len(str(value)) for outputs in self.outputs for output in outputs
                   for value in output.get("data", {}).values())


def expand_includes(text: str, main_dir: Path, root: Path, depth: int = 0) -> str:
    """Replace include shortcodes (alone on a line) with the files' text, recursively.

    As in Quarto, a relative path is read from the main document's folder and a path that
    starts with ``/`` from the project's root.
    """
    if depth > 10:
        raise ValueError(f"{main_dir}: includes nested more than 10 deep; expected no cycle")
    lines = []
    for line in text.splitlines():
        match = INCLUDE_RE.match(line.strip())
        if match is None:
            lines.append(line)
            continue
        name = match.group(1).strip("\"'")
        path = root / name.lstrip("/") if name.startswith("/") else main_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: included file not found; expected it to exist "
                                    "(run python -m recsys.report.prepare)")
        lines.append(expand_includes(path.read_text(encoding="utf-8"), main_dir, root,
                                     depth + 1))
    return "\n".join(lines)


def parse_chapter(path: str | Path, root: str | Path) -> Chapter:
    """Read a ``.qmd`` chapter into prose and code cells, includes expanded."""
    path = Path(path)
    text = expand_includes(path.read_text(encoding="utf-8"), path.parent, Path(root))
    front_matter, text = split_front_matter(text)

    parts: list[str | CodeCell] = []
    prose: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        fence = FENCE_RE.match(line)
        if fence is None:
            prose.append(line)
            continue
        parts.append("\n".join(prose))
        prose = []
        body = _read_fenced(lines, fence.group(1), path)
        parts.append(CodeCell("\n".join(body), parse_options(body, path)))
    parts.append("\n".join(prose))
    return Chapter(path, front_matter, parts)


def parse_options(lines: list[str], path: Path | None = None) -> dict[str, Any]:
    """The YAML in a cell's leading ``#|`` lines."""
    option_lines = []
    for line in lines:
        match = OPTION_RE.match(line)
        if match is None:
            break
        option_lines.append(re.sub(r":\s+$", ":", line[match.end():]))
    options = yaml.safe_load("\n".join(option_lines)) if option_lines else {}
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"{path}: cell options are not a YAML mapping: {option_lines}")
    return options


def to_notebook(chapter: Chapter) -> nbformat.NotebookNode:
    """The notebook Quarto would execute: prose as Markdown cells, code cells in order."""
    cells = []
    for part in chapter.parts:
        if isinstance(part, CodeCell):
            cells.append(nbformat.v4.new_code_cell(part.source))
        elif part.strip():
            cells.append(nbformat.v4.new_markdown_cell(part))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def execute_chapter(
    path: str | Path, root: str | Path, *, timeout: int = 1200
) -> ExecutedChapter:
    """Execute one chapter in its folder; raises nbclient's ``CellExecutionError`` on error.

    :func:`~recsys.report.prepare.prepare` must have run for ``root``.
    """
    chapter = parse_chapter(path, root)
    notebook = to_notebook(chapter)
    client = NotebookClient(notebook, timeout=timeout, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    with _environment({ENV_PROJECT_ROOT: str(Path(root).resolve())}):
        client.execute()
    outputs = [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]
    return ExecutedChapter(chapter, outputs)


def book_chapters(root: str | Path) -> list[Path]:
    """The chapter files listed in ``_quarto.yml``, in book order."""
    root = Path(root)
    config = yaml.safe_load((root / PROJECT_FILE).read_text(encoding="utf-8"))
    return [root / name for name in _flatten_chapters(config["book"]["chapters"])]


def execute_book(root: str | Path, *, timeout: int = 1200) -> dict[str, ExecutedChapter]:
    """Run the pre-render step, then every chapter; keyed by path relative to ``root``."""
    root = Path(root)
    prepare(root)
    return {path.relative_to(root).as_posix(): execute_chapter(path, root, timeout=timeout)
            for path in book_chapters(root)}


def chapter_problems(chapter: Chapter) -> list[str]:
    """What a chapter's source breaks of the book's rules, one line each (empty: none).

    Figures need a ``fig-`` label, ``fig-cap`` and ``fig-alt``; tables a ``tbl-`` label and
    ``tbl-cap``; every such label must be cited in the prose (``@label``). Inline
    expressions are refused: Quarto's cache restores code cells only, so their values would
    vanish from a cached page.
    """
    problems = []
    prose = chapter.prose
    for cell in chapter.cells:
        label = cell.label
        if label.startswith("fig-"):
            problems += [f"{label}: missing {key}" for key in ("fig-cap", "fig-alt")
                         if not cell.options.get(key)]
        if label.startswith("tbl-") and not cell.options.get("tbl-cap"):
            problems.append(f"{label}: missing tbl-cap")
        if label.startswith(("fig-", "tbl-")) and not re.search(rf"@{re.escape(label)}\b",
                                                               prose):
            problems.append(f"{label}: never cited as @{label} in the prose")
    problems += [f"inline expression `{{python}} {expression}`; show it from a cell instead"
                 for expression in INLINE_RE.findall(prose)]
    return problems


def output_problems(executed: ExecutedChapter) -> list[str]:
    """What a chapter's outputs break: unlabelled charts or tables, network use, page weight."""
    problems = []
    for label, _ in executed.charts():
        if not label.startswith("fig-"):
            problems.append(f"a chart in a cell labelled {label!r}; expected a fig- label")
    for label, _ in executed.tables():
        if not label.startswith("tbl-"):
            problems.append(f"a table in a cell labelled {label!r}; expected a tbl- label")
    for cell, outputs in executed.cell_outputs():
        problems += [f"{cell.label or 'a cell'}: output names an external resource "
                     f"({match.group(0)!r})" for html in _mime(outputs, "text/html")
                     for match in EXTERNAL_RE.finditer(html)]
    if executed.page_bytes() > MAX_PAGE_BYTES:
        problems.append(f"outputs weigh {executed.page_bytes():,} bytes; expected at most "
                        f"{MAX_PAGE_BYTES:,}")
    return problems


def _mime(outputs: list[dict[str, Any]], mime: str) -> list[str]:
    """The ``mime`` data of display outputs, as text."""
    found = []
    for output in outputs:
        value = output.get("data", {}).get(mime)
        if value is not None:
            found.append(value if isinstance(value, str) else "".join(value))
    return found


def _read_fenced(lines: Iterator[str], fence: str, path: Path) -> list[str]:
    """Lines up to the closing fence (same number of backticks, or more)."""
    body = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(fence) and set(stripped) == {"`"}:
            return body
        body.append(line)
    raise ValueError(f"{path}: a {fence}{{python}} block is never closed")


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """YAML front matter (``---`` fenced, at the very top) and the rest of the text."""
    match = re.match(r"\A---\n(.*?)\n---\n", text, re.DOTALL)
    if match is None:
        return {}, text
    return yaml.safe_load(match.group(1)) or {}, text[match.end():]


def _flatten_chapters(items: list[Any]) -> Iterator[str]:
    """Chapter files of a ``book.chapters`` list, parts included."""
    for item in items:
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            if "href" in item or "file" in item:
                yield item.get("href") or item["file"]
            yield from _flatten_chapters(item.get("chapters", []))


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the kernel this process starts, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
