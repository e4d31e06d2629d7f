"""The report charts: valid SVG whatever the names contain, one bar per hour and weekday, readable labels.

Built from report values directly (no database): the numbers themselves are tested in test_reports.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from telecrm_calls.reports import (
    CallbackStats,
    CallCounts,
    CallReport,
    EmployeeRanking,
    EmployeeRow,
    HourCount,
    Subject,
    WeekdayCount,
    format_duration,
    parse_period,
)
from telecrm_calls.reports_svg import (
    MAX_RANKING_ROWS,
    period_label,
    ranking_svg,
    report_svg,
    report_title,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = 'Ann <script>alert("x")</script> & "Co" \x01\x0b\ufffe'


def report(
    name: str | None = "Ann", *, calls_at: dict[int, int] | None = None, tz: str = "UTC"
) -> CallReport:
    calls_at = calls_at or {}
    hours = []
    for hour in range(24):
        calls = calls_at.get(hour, 0)
        hours.append(HourCount(hour, calls, calls // 2, 1 if calls else 0))
    total = sum(calls_at.values())
    return CallReport(
        subject=Subject("employee", "emp-1", name),
        period=parse_period("2025-03-01", "2025-04-01", tz),
        counts=CallCounts(
            calls=total, inbound=total, answered=total // 2, talk_ms=3_723_000, mean_talk_ms=61_000
        ),
        callbacks=CallbackStats(
            missed_items=3, resolved=2, called_back=1, open=1, mean_callback_ms=1_807_000
        ),
        hours=hours,
        weekdays=[WeekdayCount(day, total if day == 5 else 0) for day in range(1, 8)],
    )


def parse(document: str) -> ET.Element:
    return ET.fromstring(document.encode())


def groups(root: ET.Element, css_class: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == css_class]


def texts(root: ET.Element) -> list[str]:
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def test_names_from_users_are_text_never_markup() -> None:
    document = report_svg(report(HOSTILE, calls_at={10: 4}))

    root = parse(document)  # well-formed despite <, &, quotes and characters XML forbids
    assert "<script" not in document
    assert not list(root.iter(f"{SVG}script"))
    expected = 'Ann <script>alert("x")</script> & "Co" '
    title = root.findtext(f"{SVG}title") or ""
    assert title.startswith(f"Calls of Employee: {expected}")
    assert f"Calls of Employee: {expected}" in texts(root)


def test_one_bar_per_hour_and_weekday_scaled_to_the_busiest() -> None:
    root = parse(report_svg(report(calls_at={9: 12, 10: 30, 17: 6})))

    hours = groups(root, "hour-bar")
    assert [g.get("data-key") for g in hours] == [str(hour) for hour in range(24)]
    heights = [
        float(total.get("height", "")) for g in hours for total in g.findall(f"{SVG}rect[@class='total']")
    ]
    assert max(heights) == heights[10]
    assert heights[9] == pytest.approx(heights[10] * 12 / 30, abs=0.2)
    assert heights[0] == 0
    assert hours[10].findtext(f"{SVG}title") == "10: 30 calls, 15 answered, 1 missed"
    assert [g.get("data-key") for g in groups(root, "weekday-bar")] == [str(day) for day in range(1, 8)]
    assert "Calls by hour of day · busiest 10:00\u201311:00" in texts(root)


def test_the_tiles_say_what_the_numbers_are() -> None:
    root = parse(report_svg(report(calls_at={10: 30})))
    shown = texts(root)
    for expected in ("Calls", "30", "Answered", "15", "Called back", "2 of 3", "30 min 07 s", "1 h 02 min"):
        assert expected in shown


def test_an_empty_period_says_so() -> None:
    root = parse(report_svg(report(calls_at={})))
    assert "No calls in this period" in texts(root)
    assert len(groups(root, "hour-bar")) == 24
    assert not any("busiest" in text for text in texts(root))


def test_sized_for_a_laptop_screen() -> None:
    root = parse(report_svg(report(calls_at={10: 1})))
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("960", "640", "0 0 960 640")


@pytest.mark.parametrize(
    ("start", "end", "tz", "label"),
    [
        ("2025-03-01", "2025-04-01", "Europe/Berlin", "1 Mar 2025 \u2013 31 Mar 2025 (Europe/Berlin)"),
        ("2025-03-14", "2025-03-15", "UTC", "14 Mar 2025 (UTC)"),
        ("2025-03-14T08:00", "2025-03-14T18:30", "UTC", "14 Mar 2025 08:00 \u2013 14 Mar 2025 18:30 (UTC)"),
    ],
)
def test_period_labels(start: str, end: str, tz: str, label: str) -> None:
    assert period_label(parse_period(start, end, tz)) == label


def test_the_title_names_the_subject_and_the_period() -> None:
    assert report_title(report("Ann")) == "Calls of Employee: Ann \u2014 1 Mar 2025 \u2013 31 Mar 2025 (UTC)"
    company = CallReport(
        Subject("company"), parse_period("2025-03-01", "2025-04-01"), CallCounts(), CallbackStats(), [], []
    )
    assert report_title(company).startswith("Calls of Whole company \u2014")


def row(n: int, name: str | None, talk_ms: int) -> EmployeeRow:
    return EmployeeRow(
        f"emp-{n}", name, "sales", CallCounts(calls=n, answered=n, talk_ms=talk_ms), CallbackStats()
    )


def test_the_ranking_chart() -> None:
    rows = [row(1, HOSTILE, 600_000), row(2, None, 300_000), row(3, "Cat", 0)]
    window = parse_period("2025-03-01", "2025-04-01")
    document = ranking_svg(EmployeeRanking(window, "sales", "Sales & <Ops>", "talk", False, rows, 3))

    root = parse(document)
    assert "<script" not in document
    assert (root.findtext(f"{SVG}title") or "").startswith(
        "Team Sales & <Ops> by talk time \u2014 1 Mar 2025"
    )
    bars = groups(root, "employee-bar")
    assert [g.get("data-key") for g in bars] == ["emp-1", "emp-2", "emp-3"]
    widths = [float(g.findall(f"{SVG}rect")[0].get("width", "")) for g in bars]
    assert widths[0] == pytest.approx(2 * widths[1])
    assert widths[2] == 0
    shown = texts(root)
    assert "10 min 00 s" in shown
    assert "emp-2" in shown  # no name known: the id


def test_a_long_ranking_is_cut_and_says_how_many_more() -> None:
    rows = [row(n, f"Employee {n}", n * 1000) for n in range(MAX_RANKING_ROWS + 5)]
    window = parse_period("2025-03-01", "2025-04-01")
    root = parse(ranking_svg(EmployeeRanking(window, None, None, "calls", False, rows, 60)))
    assert len(groups(root, "employee-bar")) == MAX_RANKING_ROWS
    assert "… and 20 more (the data lists them all)" in texts(root)
    assert int(root.get("height", "0")) > 640  # taller with more rows, as wide


@pytest.mark.parametrize(
    ("ms", "text"),
    [(None, "-"), (0, "0 s"), (12_400, "12 s"), (250_000, "4 min 10 s"), (3_723_000, "1 h 02 min")],
)
def test_durations_for_people(ms: int | None, text: str) -> None:
    assert format_duration(ms) == text
