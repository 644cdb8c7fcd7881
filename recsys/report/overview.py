"""The book's front page: which checkpoint it describes and where that came from."""

from __future__ import annotations

from typing import Any

import pandas as pd
from IPython.display import Markdown

from recsys.report.context import ReportContext
from recsys.report.tables import count, markdown_table


def checkpoint_table(context: ReportContext) -> Markdown:
    """The checkpoint's name, age, data, split and models, as recorded in its manifest."""
    manifest = context.manifest
    data: dict[str, Any] = manifest.get("data", {})
    split: dict[str, Any] = manifest.get("split", {})
    rows = [
        ("Checkpoint", f"`{context.name}`"),
        ("Created", str(manifest.get("created_at", "unknown"))),
        ("Data", f"`{data.get('source', 'unknown')}`"),
        ("Data fingerprint", f"`{str(data.get('fingerprint', ''))[:12]}`"),
        ("Users, items, interactions", _sizes(data)),
        ("Split strategy", f"`{split.get('strategy', 'unknown')}`"),
        ("Models", ", ".join(f"`{name}`" for name in manifest.get("models", {}))),
        ("recsys version", str(manifest.get("library_versions", {}).get("recsys", "unknown"))),
    ]
    return markdown_table(pd.DataFrame(rows, columns=["", "Value"]))


def _sizes(data: dict[str, Any]) -> str:
    keys = ("n_users", "n_items", "n_interactions")
    if not all(key in data for key in keys):
        return "unknown"
    return ", ".join(count(data[key]) for key in keys)
