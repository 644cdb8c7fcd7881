"""The book: its configuration, the pre-render step, the cache key, and every chapter run.

Quarto is usually absent, so chapters are executed by :mod:`recsys.report.execute`, which
does what Quarto's Jupyter engine does; where ``quarto`` is on PATH the whole book is also
rendered for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import write_movielens
from jupyter_cache import get_cache

from recsys.checkpoint import MANIFEST_VERSION, save_checkpoint
from recsys.config import load_config
from recsys.model import ModelConfig, MultVAE
from recsys.preprocess import Preprocessing, load_dataset
from recsys.report import execute, prepare
from recsys.report.charts import BUNDLE_NAME

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "ml-latest-small"
BOOK_FILES = ("_quarto.yml", "index.qmd", "report")


def copy_book(target: Path) -> Path:
    """Copy the book's sources (not generated files) to ``target``, with the data beside it."""
    target.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name,
                            ignore=shutil.ignore_patterns("_checkpoint.qmd", "assets"))
        else:
            shutil.copy(source, target / name)
    (target / "data").symlink_to(REPO / "data")
    return target


def fake_checkpoint(
    root: Path, name: str = "fake", created_at: str = "2024-01-01T00:00:00",
    latent_dim: int = 2,
) -> Path:
    """An untrained but valid checkpoint of tiny data written beside it, in ``root``."""
    data = root / "fake-data"
    if not data.exists():
        write_movielens(data, n_users=30, n_items=110)
    config = load_config(None, [f'data.path="{data}"'])
    dataset = load_dataset(data, Preprocessing(**config["preprocessing"]))
    model = MultVAE(ModelConfig("multvae", dataset.n_items, (8,), latent_dim=latent_dim))
    manifest = {
        "created_at": created_at,
        "data": {"config": config["data"], "preprocessing": config["preprocessing"],
                 "fingerprint": dataset.fingerprint},
        "split": {"config": config["split"]}, "item_ids": list(dataset.item_ids),
        "primary": "multvae", "training": {"model": config["model"]}, "baselines": {},
        "models": {"multvae": {"config": model.config.to_dict()}},
    }
    return save_checkpoint(root / "checkpoints", name, {"multvae": model}, manifest)


@pytest.fixture
def no_checkpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECSYS_CHECKPOINT", raising=False)
    monkeypatch.delenv("QUARTO_PROJECT_ROOT", raising=False)


# --- configuration ---------------------------------------------------------------------------


def test_book_config_lists_existing_chapters_with_the_index_first() -> None:
    config = yaml.safe_load((REPO / "_quarto.yml").read_text())
    chapters = execute.book_chapters(REPO)

    assert config["project"]["type"] == "book"
    assert config["project"]["output-dir"] == "_book"
    assert config["project"]["pre-render"] == "python -m recsys.report.prepare"
    assert config["execute"]["cache"] is True
    assert f"report/assets/{BUNDLE_NAME}" in config["project"]["resources"]
    assert chapters[0] == REPO / "index.qmd"
    assert all(path.is_file() for path in chapters)
    assert all(path.parent == REPO / "report" for path in chapters[1:])


def test_every_page_loads_the_local_bundle_and_nothing_from_a_cdn() -> None:
    chapter_header = yaml.safe_load((REPO / "report" / "_metadata.yml").read_text())
    index_header, _ = execute.split_front_matter((REPO / "index.qmd").read_text())

    headers = {"report": chapter_header, "": index_header}
    for folder, metadata in headers.items():
        text = metadata["format"]["html"]["include-in-header"]["text"]
        src = text.split('src="')[1].split('"')[0]
        assert (Path(folder) / src).as_posix() == f"report/assets/{BUNDLE_NAME}"
        assert "http" not in text


def test_every_chapter_includes_the_checkpoint_and_opens_it_in_a_hidden_cell() -> None:
    for path in execute.book_chapters(REPO):
        text = path.read_text()
        include = "report/_checkpoint.qmd" if path.parent == REPO else "_checkpoint.qmd"
        assert f"{{{{< include {include} >}}}}" in text, path.name
        assert "book = open_chapter(CHECKPOINT, CHECKPOINT_IDENTITY)" in text, path.name


def test_chapter_sources_follow_the_book_rules(tmp_path: Path, no_checkpoint_env: None) -> None:
    root = copy_book(tmp_path / "book")
    (root / prepare.INCLUDE).write_text(prepare.include_text("c", "i", "s"))

    for path in execute.book_chapters(root):
        chapter = execute.parse_chapter(path, root)
        assert execute.chapter_problems(chapter) == [], path.name
        assert chapter.cells[0].options == {"include": False}  # the generated include
        assert chapter.cells[1].options == {"include": False}  # the setup cell


def test_chapter_code_passes_ruff(tmp_path: Path, no_checkpoint_env: None) -> None:
    beside_python = Path(sys.executable).with_name("ruff")
    ruff = str(beside_python) if beside_python.is_file() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    root = copy_book(tmp_path / "book")
    (root / prepare.INCLUDE).write_text(prepare.include_text("c", "i", "s"))

    notebooks = []
    for path in execute.book_chapters(root):
        notebook = execute.to_notebook(execute.parse_chapter(path, root))
        notebooks.append(tmp_path / f"{path.stem}.ipynb")
        nbformat.write(notebook, notebooks[-1])
    result = subprocess.run([ruff, "check", "--config", str(REPO / "pyproject.toml"),
                             *map(str, notebooks)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stdout


# --- parsing ---------------------------------------------------------------------------------


def test_includes_resolve_from_the_main_file_or_from_the_root(tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "_near.qmd").write_text("near {{< include /_far.qmd >}} inline")
    (tmp_path / "_far.qmd").write_text("far\n\n{{< include _deep.qmd >}}\n")
    (tmp_path / "report" / "_deep.qmd").write_text("deep")
    text = "a\n\n{{< include _near.qmd >}}\n\n{{< include /_far.qmd >}}\n"

    expanded = execute.expand_includes(text, tmp_path / "report", tmp_path)

    # A shortcode inside a line is left alone; nested includes resolve from the main file.
    assert expanded.splitlines() == ["a", "", "near {{< include /_far.qmd >}} inline", "",
                                     "far", "", "deep"]
    with pytest.raises(FileNotFoundError, match=r"_deep\.qmd"):
        execute.expand_includes("{{< include _far.qmd >}}", tmp_path, tmp_path)


def test_a_missing_include_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"_checkpoint\.qmd.*recsys\.report\.prepare"):
        execute.expand_includes("{{< include _checkpoint.qmd >}}", tmp_path, tmp_path)


def test_cells_keep_their_order_and_multiline_options(tmp_path: Path) -> None:
    path = tmp_path / "c.qmd"
    path.write_text(
        "# Title\n\nProse @fig-a.\n\n"
        "```{python}\n#| label: fig-a\n#| fig-cap: \"A long\n#|   caption.\"\n#| fig-alt: x\n"
        "chart()\n```\n\n"
        "```python\nnot_executed()\n```\n\n"
        "````{python}\n#| echo: false\nvalue = '```'\n````\n"
    )

    chapter = execute.parse_chapter(path, tmp_path)

    assert [cell.label for cell in chapter.cells] == ["fig-a", ""]
    assert chapter.cells[0].options["fig-cap"] == "A long caption."
    assert chapter.cells[1].options == {"echo": False}
    assert "not_executed()" in chapter.prose
    assert execute.chapter_problems(chapter) == []


@pytest.mark.parametrize(
    ("options", "prose", "problem"),
    [
        ("#| label: fig-x\n#| fig-cap: c\n", "@fig-x", "fig-x: missing fig-alt"),
        ("#| label: fig-x\n#| fig-alt: a\n", "@fig-x", "fig-x: missing fig-cap"),
        ("#| label: fig-x\n#| fig-cap: c\n#| fig-alt: a\n", "see the figure",
         "fig-x: never cited as @fig-x in the prose"),
        ("#| label: tbl-x\n", "@tbl-x", "tbl-x: missing tbl-cap"),
        ("", "it is `{python} 1 + 1`", "inline expression `{python} 1 + 1`"),
    ],
)
def test_chapter_problems_name_what_is_missing(
    tmp_path: Path, options: str, prose: str, problem: str
) -> None:
    path = tmp_path / "c.qmd"
    path.write_text(f"{prose}\n\n```{{python}}\n{options}x = 1\n```\n")

    problems = execute.chapter_problems(execute.parse_chapter(path, tmp_path))

    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_a_citation_of_a_longer_label_does_not_count(tmp_path: Path) -> None:
    path = tmp_path / "c.qmd"
    path.write_text("@fig-ab\n\n```{python}\n#| label: fig-a\n#| fig-cap: c\n#| fig-alt: a\n"
                    "x = 1\n```\n")

    problems = execute.chapter_problems(execute.parse_chapter(path, tmp_path))

    assert problems == ["fig-a: never cited as @fig-a in the prose"]


# --- the pre-render step and the cache key ----------------------------------------------------


def test_prepare_without_a_checkpoint_fails_with_one_line_saying_how_to_train(
    tmp_path: Path, no_checkpoint_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "_quarto.yml").write_text("")

    status = prepare.main(["--root", str(tmp_path)])

    error = capsys.readouterr().err
    assert status == 1
    assert len(error.strip().splitlines()) == 1
    assert "no checkpoint" in error
    assert "recsys train" in error
    assert not (tmp_path / prepare.INCLUDE).exists()


@pytest.mark.parametrize("damage", ["old manifest", "missing data", "other data", "latent 1"])
def test_prepare_refuses_a_checkpoint_the_chapters_cannot_use(
    tmp_path: Path, no_checkpoint_env: None, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    checkpoint = fake_checkpoint(tmp_path, latent_dim=1 if damage == "latent 1" else 2)
    manifest = checkpoint / "manifest.json"
    ratings = tmp_path / "fake-data" / "ratings.csv"
    if damage == "old manifest":
        manifest.write_text(manifest.read_text().replace(
            f'"manifest_version": {MANIFEST_VERSION}', '"manifest_version": 0'))
    elif damage == "missing data":
        ratings.unlink()
    elif damage == "other data":
        ratings.write_text("\n".join(ratings.read_text().splitlines()[:-30]) + "\n")

    status = prepare.main(["--root", str(tmp_path)])

    error = capsys.readouterr().err
    assert status == 1
    assert len(error.strip().splitlines()) == 1, error
    expected = {"old manifest": "manifest version 0", "missing data": "expected ratings.csv",
                "other data": "fingerprint", "latent 1": "latent_dim"}[damage]
    assert expected in error
    assert not (tmp_path / prepare.INCLUDE).exists()


def test_prepare_writes_the_include_and_the_bundle(tmp_path: Path, no_checkpoint_env: None) -> None:
    fake_checkpoint(tmp_path, "old", "2024-01-01T00:00:00")
    newest = fake_checkpoint(tmp_path, "new", "2024-06-01T00:00:00")

    prepared = prepare.prepare(tmp_path)

    include = (tmp_path / prepare.INCLUDE).read_text()
    assert prepared.checkpoint == newest.resolve()
    assert "CHECKPOINT = 'checkpoints/new'" in include
    assert f"CHECKPOINT_IDENTITY = {prepared.identity!r}" in include
    bundle = (tmp_path / prepare.ASSETS / BUNDLE_NAME).read_text()
    assert "vegaEmbed" in bundle
    assert len(bundle) > 100_000


def test_prepare_leaves_unchanged_files_untouched(tmp_path: Path, no_checkpoint_env: None) -> None:
    fake_checkpoint(tmp_path)
    first = prepare.prepare(tmp_path)
    stamps = {path: path.stat().st_mtime_ns for path in (first.include, first.bundle)}
    os.utime(first.include, ns=(1, 1))
    os.utime(first.bundle, ns=(1, 1))

    prepare.prepare(tmp_path)

    assert all(path.stat().st_mtime_ns == 1 for path in stamps)


def test_prepare_follows_the_environment_variable(
    tmp_path: Path, no_checkpoint_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = fake_checkpoint(tmp_path / "elsewhere", "chosen")
    fake_checkpoint(tmp_path / "book", "newest", "2030-01-01T00:00:00")
    monkeypatch.setenv("RECSYS_CHECKPOINT", str(elsewhere))

    prepared = prepare.prepare(tmp_path / "book")

    assert prepared.checkpoint == elsewhere.resolve()
    assert repr(str(elsewhere.resolve())) in prepared.include.read_text()


def notebook_hash(root: Path, chapter: Path, cache: Path) -> str:
    """The key under which Quarto's Jupyter cache stores a chapter's executed notebook."""
    notebook = execute.to_notebook(execute.parse_chapter(chapter, root))
    return get_cache(str(cache)).create_hashed_notebook(notebook)[1]


def test_the_cache_key_changes_with_the_checkpoint_and_nothing_else(
    tmp_path: Path, no_checkpoint_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare, "source_identity", lambda: "code")
    root = copy_book(tmp_path / "book")
    checkpoint = fake_checkpoint(root)
    cache = tmp_path / "cache"
    chapters = execute.book_chapters(root)

    prepare.prepare(root)
    before = [notebook_hash(root, path, cache) for path in chapters]
    prepare.prepare(root)
    again = [notebook_hash(root, path, cache) for path in chapters]

    # Prose edits do not re-execute a chapter.
    data = root / "report" / "data.qmd"
    data.write_text(data.read_text().replace("What did the model", "What did this model"))
    edited = [notebook_hash(root, path, cache) for path in chapters]

    # A new checkpoint (here: the same weights with another manifest) re-executes every chapter.
    manifest = checkpoint / "manifest.json"
    manifest.write_text(manifest.read_text().replace("2024-01-01", "2024-02-02"))
    prepare.prepare(root)
    after = [notebook_hash(root, path, cache) for path in chapters]

    assert before == again == edited
    assert all(old != new for old, new in zip(before, after, strict=True))


def test_the_cache_key_changes_with_the_analysis_code(
    tmp_path: Path, no_checkpoint_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_book(tmp_path / "book")
    fake_checkpoint(root)
    chapter = root / "report" / "data.qmd"

    monkeypatch.setattr(prepare, "source_identity", lambda: "code before")
    prepare.prepare(root)
    before = notebook_hash(root, chapter, tmp_path / "cache")
    monkeypatch.setattr(prepare, "source_identity", lambda: "code after")
    prepare.prepare(root)
    after = notebook_hash(root, chapter, tmp_path / "cache")

    assert before != after


def test_source_identity_is_a_hash_of_the_package() -> None:
    from recsys.report.context import source_identity

    assert len(source_identity()) == 64


# --- executing the book ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def book_root(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[Path]:
    """A copy of the book with the session's small checkpoint trained on the shipped data."""
    root = copy_book(tmp_path_factory.mktemp("book") / "book")
    shutil.copytree(tiny_checkpoint, root / "checkpoints" / "tiny")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RECSYS_CHECKPOINT", raising=False)
        patch.delenv("QUARTO_PROJECT_ROOT", raising=False)
        yield root


@pytest.fixture(scope="module")
def executed_book(book_root: Path) -> dict[str, execute.ExecutedChapter]:
    return execute.execute_book(book_root)


@pytest.mark.slow
def test_every_chapter_executes_and_follows_the_book_rules(
    executed_book: dict[str, execute.ExecutedChapter], book_root: Path
) -> None:
    listed = [path.relative_to(book_root).as_posix()
              for path in execute.book_chapters(book_root)]
    assert list(executed_book) == listed
    assert listed[:4] == ["index.qmd", "report/data.qmd", "report/splits.qmd",
                          "report/predictions.qmd"]
    assert listed[-1] == "report/training.qmd"
    for name, executed in executed_book.items():
        assert execute.chapter_problems(executed.chapter) == [], name
        assert execute.output_problems(executed) == [], name


@pytest.mark.slow
def test_each_labelled_figure_and_table_is_drawn_once(
    executed_book: dict[str, execute.ExecutedChapter],
) -> None:
    for name, executed in executed_book.items():
        labels = [cell.label for cell in executed.chapter.cells]
        charts = [label for label, _ in executed.charts()]
        tables = [label for label, _ in executed.tables()]
        assert charts == [label for label in labels if label.startswith("fig-")], name
        assert tables == [label for label in labels if label.startswith("tbl-")], name

    assert len(executed_book["report/data.qmd"].charts()) == 3
    assert len(executed_book["report/splits.qmd"].charts()) == 2
    assert len(executed_book["report/predictions.qmd"].charts()) == 5
    assert len(executed_book["report/training.qmd"].charts()) == 2
    assert len(executed_book["report/latent.qmd"].charts()) == 4
    assert len(executed_book["report/output.qmd"].charts()) == 4


@pytest.mark.slow
def test_charts_name_no_url_and_pages_stay_small(
    executed_book: dict[str, execute.ExecutedChapter],
) -> None:
    for executed in executed_book.values():
        for label, html in executed.charts():
            assert "http" not in html, label
            assert "<script src" not in html, label
            assert "vegaEmbed(" in html, label
        assert executed.page_bytes() < execute.MAX_PAGE_BYTES


@pytest.mark.slow
def test_tables_and_sentences_carry_the_checkpoint_numbers(
    executed_book: dict[str, execute.ExecutedChapter], book_root: Path
) -> None:
    stats = dict(executed_book["report/data.qmd"].tables())["tbl-data-stats"]
    compare = dict(executed_book["report/splits.qmd"].tables())["tbl-splits-compare"]
    manifest = json.loads((book_root / "checkpoints/tiny/manifest.json").read_text())

    assert f"| Users | {manifest['data']['n_users']:,} |" in stats
    assert "heldout_users (this checkpoint)" in compare
    for strategy in ("random", "leave_one_out", "temporal_user", "temporal_global"):
        assert f"| {strategy} |" in compare


@pytest.mark.slow
def test_a_chapter_refuses_a_checkpoint_changed_after_prepare(
    book_root: Path, tmp_path: Path
) -> None:
    from nbclient.exceptions import CellExecutionError

    root = copy_book(tmp_path / "book")
    shutil.copytree(book_root / "checkpoints", root / "checkpoints")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RECSYS_CHECKPOINT", raising=False)
        prepare.prepare(root)
    (root / "checkpoints/tiny/extra.txt").write_text("changed")

    with pytest.raises(CellExecutionError, match="differs from the prepared"):
        execute.execute_chapter(root / "index.qmd", root)


@pytest.mark.slow
def test_quarto_renders_the_book_offline(book_root: Path) -> None:
    quarto = shutil.which("quarto")
    if quarto is None:
        pytest.skip("quarto is not installed")
    # The pre-render step and the kernel must run in this environment's Python.
    env = {**os.environ, "QUARTO_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([quarto, "render"], cwd=book_root, env=env, check=True)

    output = book_root / "_book"
    assert (output / "report" / "assets" / BUNDLE_NAME).is_file()
    for page in ("index.html", "report/data.html", "report/splits.html",
                 "report/predictions.html", "report/latent.html", "report/output.html",
                 "report/training.html"):
        html = (output / page).read_text()
        assert "jsdelivr" not in html
        assert 'src="http' not in html
