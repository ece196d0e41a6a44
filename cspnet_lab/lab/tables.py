"""Tables for the command line (plain text) and the chapters (Markdown): rows of dicts in, text out."""

from __future__ import annotations


def _cell(row: dict, key: str, spec: str) -> str:
    return "-" if row.get(key) is None else format(row[key], spec)


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table: columns are (key, header, format spec); a missing value prints as "-"."""
    cells = [[h for _, h, _ in columns]]
    cells += [[_cell(row, k, f) for k, _, f in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """The same table as :func:`format_table`, in Markdown (the chapters display it rendered).

    Columns with a format spec are numbers and are right-aligned; the others are left-aligned.
    """
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---:" if f else ":---" for _, _, f in columns) + "|"
    body = ["| " + " | ".join(_cell(row, k, f) for k, _, f in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])
