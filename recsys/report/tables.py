"""Tables and sentences for the book, as Markdown that Quarto renders with its own styles.

Chapter cells display these objects; Quarto turns a ``text/markdown`` output into part of the
page, so a table gets the book's table style and its caption, and a sentence with the
checkpoint's numbers reads as prose. Both are cell outputs, so Quarto's cache keeps them.
"""

from __future__ import annotations

import math

import pandas as pd
from IPython.display import Markdown


def markdown_table(frame: pd.DataFrame) -> Markdown:
    """A pipe table of ``frame`` (values as they are; format numbers before).

    Columns whose values are all numbers, or text that starts with a digit, are aligned
    right; the others left. The index is not shown.
    """
    header = [_cell(name) for name in frame.columns]
    align = ["---:" if _numeric(frame[name]) else ":---" for name in frame.columns]
    lines = [_row(header), _row(align)]
    lines += [_row([_cell(value) for value in row]) for row in frame.itertuples(index=False)]
    return Markdown("\n".join(lines))


def sentence(text: str) -> Markdown:
    """One paragraph of prose that carries the checkpoint's numbers."""
    return Markdown(" ".join(text.split()))


def count(value: float) -> str:
    """An integer count with thousands separators: ``12,345``."""
    return f"{round(value):,}"


def decimal(value: float, digits: int = 1) -> str:
    """A number with a fixed number of decimals and thousands separators: ``1,234.5``."""
    return f"{value:,.{digits}f}"


def number(value: float, digits: int = 1) -> str:
    """A number with at most ``digits`` decimals, trailing zeros dropped: ``41``, ``40.5``."""
    text = decimal(value, digits)
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(share: float) -> str:
    """A share in [0, 1] as a percentage with two significant digits: ``1.6%``, ``0.023%``."""
    if share <= 0 or not math.isfinite(share):
        return f"{share * 100:.0f}%"
    digits = max(0, 1 - math.floor(math.log10(share * 100)))
    return f"{share * 100:.{digits}f}%"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(value: object) -> str:
    """A value as table text: pipes escaped, line breaks flattened."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _numeric(column: pd.Series) -> bool:
    """Whether a column holds numbers, or text that starts with a digit (formatted numbers)."""
    if pd.api.types.is_numeric_dtype(column):
        return True
    text = column.astype(str).str.lstrip("-")
    return bool(len(text)) and bool(text.str.match(r"\d").all())
