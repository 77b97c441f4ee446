"""The benchmark's report tables: one row per model, failed models with their error in the row,
a terminal table at 80 columns or Markdown with every key (shared by every `zooserve bench`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zooserve.core.errors import ZooError


def error_text(exc: BaseException) -> str:
    """One line for a table cell: the error code and message (ZooError) or type and text."""
    if isinstance(exc, ZooError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def nothing_measured(rows: list[dict[str, Any]]) -> str | None:
    """Why a run measured nothing (every row failed, or there were none); None otherwise."""
    if any(not row.get("error") for row in rows):
        return None
    if not rows:
        return "no model to measure here (see `zooserve models list`)"
    return "; ".join(f"{row.get('model') or row.get('tracker')}: {row['error']}" for row in rows)


def failed_row(keys: list[str], name: str, family: str | None, exc: BaseException) -> dict:
    """A row for a model that could not be measured: its error, every measurement empty."""
    row: dict[str, Any] = dict.fromkeys(keys)
    row.update(model=name, family=family, error=error_text(exc))
    return row


def render_rows(
    console: Console, rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str
) -> None:
    """Rows a person can read at 80 columns: on a terminal, a table of the key columns whose
    cells wrap (never "ow…"), then each failed model's error on its own lines; otherwise
    (piped, redirected) Markdown with every key."""
    if not console.is_terminal:
        text = markdown_table(rows).rstrip("\n")
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=title)
    for _, header in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        cells = [_cell(row.get(key)) for key, _ in columns]
        if row.get("error"):
            cells[-1] = "[red]error[/red]"
        table.add_row(*cells)
    console.print(table)
    for row in rows:
        if row.get("error"):
            console.print(f"[red]{escape(str(row['model']))}[/red]: {escape(str(row['error']))}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return escape(str(value))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Every key of every row (the union, in first-seen order) as a Markdown table."""
    if not rows:
        return ""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = ["" if row.get(k) is None else str(row.get(k)).replace("|", "\\|") for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
