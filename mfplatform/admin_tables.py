"""Small HTML tables for admin pages, so stored JSON (run progress, timings, reports) reads as
tables instead of raw JSON. Every value is escaped (format_html)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.utils.html import format_html, format_html_join

EMPTY = "-"


def number(value, digits: int = 4) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence], css_class: str = "") -> str:
    rows = list(rows)
    if not rows:
        return EMPTY
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join("", "<tr>{}</tr>", (
        (format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows))
    return format_html('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
                       css_class, head, body)
