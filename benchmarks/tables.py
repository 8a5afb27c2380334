"""Markdown tables, as every benchmark script writes them."""

from collections.abc import Sequence


def table_header(columns: Sequence[str]) -> list[str]:
    """
    The first two lines of a markdown table: the column names, then the alignment row (the first column left-aligned,
    the others, numbers, right-aligned).

    :param columns: Column names
    :return: ``[names row, alignment row]``
    """
    return ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]


def cell(value: float | int | None) -> str:
    """A table cell: integers as they are, seconds to the millisecond, a dash when not measured."""
    if value is None:
        return "–"
    return f"{value}" if isinstance(value, int) else f"{value:.3f}"
