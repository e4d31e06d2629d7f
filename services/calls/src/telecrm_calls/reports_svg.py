"""The call reports as SVG charts, drawn here (no chart library), for a laptop screen.

:func:`report_svg` draws one subject's report: a title naming the subject and the period, tiles with the
numbers (calls, answered, missed, called back, time to callback, talk time), the calls per hour of the
day as stacked bars (answered, missed, the rest) and per weekday. :func:`ranking_svg` draws the
per-employee ranking as horizontal bars of the sorted-by number.

Names come from users: every text goes through :func:`_text` (characters XML does not allow dropped,
``<``, ``&``, quotes escaped), so a name cannot break the document or put markup into it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import timedelta
from xml.sax.saxutils import escape, quoteattr

from telecrm_calls.reports import (
    CallReport,
    EmployeeRanking,
    EmployeeRow,
    Period,
    format_duration,
)

WIDTH = 960
HEIGHT = 640
MARGIN = 24
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
INK, MUTED, GRID, TILE = "#1f2933", "#616e7c", "#e4e7eb", "#f5f7fa"
ANSWERED, MISSED, OTHER = "#2f6fdf", "#d64545", "#b8c2cc"
MAX_RANKING_ROWS = 40
TILE_HEIGHT = 100
EN_DASH = "\u2013"
DASH = f" {EN_DASH} "
KIND_TITLES = {"employee": "Employee", "team": "Team", "contact": "Contact"}
METRIC_LABELS = {
    "calls": "calls",
    "inbound": "inbound calls",
    "outbound": "outbound calls",
    "internal": "internal calls",
    "answered": "answered calls",
    "answered_inbound": "answered inbound calls",
    "answered_outbound": "answered outbound calls",
    "missed": "missed calls",
    "missed_outgoing": "outgoing calls not reached",
    "talk": "talk time",
    "mean_talk": "mean talk time",
    "missed_items": "missed-call items",
    "resolved": "missed calls resolved",
    "called_back": "missed calls called back",
    "open": "missed calls still open",
    "mean_callback": "mean time to callback",
    "name": "calls",  # sorted by name: the bars still show the calls
}
DURATION_METRICS = ("talk", "mean_talk", "mean_callback")

# Characters XML 1.0 does not allow (control characters, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(value: str, limit: int | None = None) -> str:
    value = _NOT_XML.sub("", value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return value


def _text(value: str, limit: int | None = None) -> str:
    """Text content, escaped."""
    return escape(_clean(value, limit))


def _attr(value: str) -> str:
    """An attribute value, quoted and escaped."""
    return quoteattr(_clean(value))


def _label(
    x: float,
    y: float,
    text: str,
    *,
    size: int = 12,
    color: str = INK,
    anchor: str = "start",
    bold: bool = False,
) -> str:
    weight = ' font-weight="600"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{color}" text-anchor="{anchor}"{weight}>'
        f"{text}</text>"
    )


def _svg(width: int, height: int, title: str, body: Sequence[str]) -> str:
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="{FONT}" role="img">',
            f"<title>{title}</title>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            *body,
            "</svg>",
            "",
        ]
    )


def period_label(window: Period) -> str:
    """``1 Mar 2025 - 31 Mar 2025 (Europe/Berlin)`` (an en dash); with times unless both ends are
    local midnights."""
    start, end = window.local(window.start), window.local(window.end)
    if window.whole_days:
        last = end - timedelta(days=1)
        dates = (
            f"{start:%-d %b %Y}"
            if last.date() == start.date()
            else f"{start:%-d %b %Y}{DASH}{last:%-d %b %Y}"
        )
    else:
        dates = f"{start:%-d %b %Y %H:%M}{DASH}{end:%-d %b %Y %H:%M}"
    return f"{dates} ({window.tz_name})"


def subject_title(report: CallReport) -> str:
    """``Calls of Employee: Alice`` (plain text, not escaped)."""
    subject = report.subject
    who = subject.label if subject.kind == "company" else f"{KIND_TITLES[subject.kind]}: {subject.label}"
    return f"Calls of {who}"


def report_title(report: CallReport) -> str:
    """The subject and the period: ``Calls of Employee: Alice — 1 Mar 2025 - 31 Mar 2025 (UTC)``."""
    return f"{subject_title(report)} — {period_label(report.period)}"


def ranking_heading(ranking: EmployeeRanking) -> str:
    return f"{ranking.label} by {METRIC_LABELS[ranking.sort]}"


def ranking_title(ranking: EmployeeRanking) -> str:
    return f"{ranking_heading(ranking)} — {period_label(ranking.period)}"


def _axis(value: int) -> tuple[int, int]:
    """The top of a count axis and its step: steps of 1, 2 or 5 times a power of ten, three to five of
    them, the top the first step at or above ``value``."""
    rough = max(value, 4) / 5
    power = 10 ** math.floor(math.log10(rough))
    step = next(int(s * power) for s in (1, 2, 5, 10) if s * power >= rough)
    step = max(step, 1)
    return max(math.ceil(value / step), 1) * step, step


def _tile(x: float, y: float, width: float, label: str, value: str, details: Sequence[str]) -> str:
    """A number with its label above and up to two lines of detail below; long values get smaller."""
    size = max(14, min(24, int((width - 24) / (0.62 * max(len(value), 1)))))
    parts = [
        '<g class="tile">',
        f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{TILE_HEIGHT}" rx="8" fill="{TILE}"/>',
        _label(x + 12, y + 22, _text(label), size=12, color=MUTED),
        _label(x + 12, y + 52, _text(value), size=size, bold=True),
    ]
    chars = int((width - 20) / 6)  # about 6 px a character at 11 px
    for line, detail in enumerate([d for d in details if d][:2]):
        parts.append(_label(x + 12, y + 72 + 14 * line, _text(detail, chars), size=11, color=MUTED))
    parts.append("</g>")
    return "".join(parts)


def _bars(
    *,
    css_class: str,
    left: float,
    right: float,
    top: float,
    bottom: float,
    columns: Sequence[tuple[str, str, int, int, int]],
) -> list[str]:
    """Stacked columns (answered, missed, the rest): (key, label, calls, answered, missed) each."""
    parts: list[str] = []
    height = bottom - top
    axis_max, step = _axis(max((column[2] for column in columns), default=0))
    for value in range(0, axis_max + 1, step):
        y = bottom - height * value / axis_max
        parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(_label(left - 6, y + 4, str(value), size=10, color=MUTED, anchor="end"))
    slot = (right - left) / len(columns)
    width = slot * 0.68
    for index, (key, label, calls, answered, missed) in enumerate(columns):
        x = left + slot * index + (slot - width) / 2
        other = max(calls - answered - missed, 0)
        tooltip = f"{label}: {calls} calls, {answered} answered, {missed} missed"
        parts.append(f'<g class="{css_class}" data-key={_attr(key)}><title>{_text(tooltip)}</title>')
        parts.append(
            f'<rect class="total" x="{x:.1f}" y="{bottom - height * calls / axis_max:.1f}" '
            f'width="{width:.1f}" height="{height * calls / axis_max:.1f}" fill="none"/>'
        )
        base = bottom
        for count, color in ((answered, ANSWERED), (missed, MISSED), (other, OTHER)):
            if count <= 0:
                continue
            h = height * count / axis_max
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" height="{h:.1f}" fill="{color}"/>'
            )
        if calls:
            parts.append(_label(x + width / 2, base - 4, str(calls), size=10, color=INK, anchor="middle"))
        parts.append(_label(x + width / 2, bottom + 16, _text(label), size=10, color=MUTED, anchor="middle"))
        parts.append("</g>")
    parts.append(f'<line x1="{left:.1f}" y1="{bottom}" x2="{right:.1f}" y2="{bottom}" stroke="{MUTED}"/>')
    return parts


def report_svg(report: CallReport) -> str:
    """One subject's report as an SVG document (960 x 640)."""
    counts, callbacks = report.counts, report.callbacks
    body = [
        _label(MARGIN, 40, _text(subject_title(report), 70), size=22, bold=True),
        _label(MARGIN, 64, _text(period_label(report.period)), size=14, color=MUTED),
    ]
    tiles: list[tuple[str, str, tuple[str, ...]]] = [
        (
            "Calls",
            str(counts.calls),
            (f"in {counts.inbound} · out {counts.outbound}", f"internal {counts.internal}"),
        ),
        (
            "Answered",
            str(counts.answered),
            (
                f"in {counts.answered_inbound} · out {counts.answered_outbound}",
                f"by others {counts.answered_by_others}" if counts.answered_by_others else "",
            ),
        ),
        (
            "Missed",
            str(counts.missed),
            ("nobody answered", f"outgoing failed {counts.missed_outgoing}"),
        ),
        (
            "Called back",
            f"{callbacks.resolved} of {callbacks.missed_items}",
            (f"{callbacks.called_back} by us", f"{callbacks.open} still open"),
        ),
        (
            "Time to callback",
            format_duration(callbacks.mean_callback_ms),
            ("mean, from the first", "missed call"),
        ),
        (
            "Talk time",
            format_duration(counts.talk_ms),
            (f"mean {format_duration(counts.mean_talk_ms)}", "per answered call"),
        ),
    ]
    gap = 12
    tile_width = (WIDTH - 2 * MARGIN - gap * (len(tiles) - 1)) / len(tiles)
    for index, (label, value, details) in enumerate(tiles):
        body.append(_tile(MARGIN + index * (tile_width + gap), 84, tile_width, label, value, details))

    top, bottom = 246.0, 560.0
    busiest = report.busiest_hour
    hour_title = "Calls by hour of day"
    if busiest is not None:
        hour_title += f" · busiest {busiest:02d}:00{EN_DASH}{(busiest + 1) % 24:02d}:00"
    body.append(_label(64, 218, _text(hour_title), size=14, bold=True))
    body += _bars(
        css_class="hour-bar",
        left=64,
        right=640,
        top=top,
        bottom=bottom,
        columns=[(str(h.hour), str(h.hour), h.calls, h.answered, h.missed) for h in report.hours],
    )
    body.append(_label(700, 218, "By weekday", size=14, bold=True))
    body += _bars(
        css_class="weekday-bar",
        left=716,
        right=WIDTH - MARGIN,
        top=top,
        bottom=bottom,
        columns=[(str(d.weekday), d.name, d.calls, d.answered, d.missed) for d in report.weekdays],
    )
    if counts.calls == 0:
        body.append(
            _label(352, (top + bottom) / 2, "No calls in this period", size=16, color=MUTED, anchor="middle")
        )
    x = 64.0
    for color, text in (
        (ANSWERED, "answered"),
        (MISSED, "missed"),
        (OTHER, "other (busy, failed, answered by others…)"),
    ):
        body.append(f'<rect x="{x:.1f}" y="596" width="12" height="12" rx="2" fill="{color}"/>')
        body.append(_label(x + 18, 606, _text(text), size=12, color=MUTED))
        x += 30 + 7.2 * len(text)
    return _svg(WIDTH, HEIGHT, _text(report_title(report)), body)


def _metric_value(row: EmployeeRow, sort: str) -> tuple[float, str]:
    key = "calls" if sort == "name" else sort
    value = row.metric(key)
    number = float(value) if isinstance(value, int) else 0.0
    if key in DURATION_METRICS:
        return number, format_duration(value if isinstance(value, int) else None)
    return number, str(value if value is not None else "-")


def ranking_svg(ranking: EmployeeRanking) -> str:
    """The per-employee ranking as horizontal bars (960 wide, taller with more rows)."""
    rows = ranking.rows[:MAX_RANKING_ROWS]
    row_height = 26
    top = 96
    height = top + row_height * max(len(rows), 1) + 56
    body = [
        _label(MARGIN, 40, _text(ranking_heading(ranking), 70), size=22, bold=True),
        _label(MARGIN, 64, _text(period_label(ranking.period)), size=14, color=MUTED),
    ]
    values = [_metric_value(row, ranking.sort) for row in rows]
    top_value = max((number for number, _ in values), default=0.0) or 1.0
    left, right = 280.0, 820.0
    for index, (row, (number, shown)) in enumerate(zip(rows, values, strict=True)):
        y = top + row_height * index
        name = row.name or row.employee_id
        width = (right - left) * number / top_value
        detail = (
            f"{row.counts.calls} calls, {row.counts.answered} answered, {row.counts.missed} missed, "
            f"talk {format_duration(row.counts.talk_ms)}"
        )
        body += [
            f'<g class="employee-bar" data-key={_attr(row.employee_id)}>',
            f"<title>{_text(name)}: {_text(detail)}</title>",
            _label(MARGIN, y + 17, _text(name, 32), size=13),
            f'<rect x="{left}" y="{y + 5}" width="{width:.1f}" height="{row_height - 10}" rx="3" '
            f'fill="{ANSWERED}"/>',
            _label(left + width + 8, y + 17, _text(shown), size=12, color=INK),
            "</g>",
        ]
    if not rows:
        body.append(_label(MARGIN, top + 17, "No employees with calls in this period", size=14, color=MUTED))
    if ranking.total > len(rows):
        more = ranking.total - len(rows)
        body.append(
            _label(MARGIN, height - 24, f"… and {more} more (the data lists them all)", size=12, color=MUTED)
        )
    return _svg(WIDTH, height, _text(ranking_title(ranking)), body)
