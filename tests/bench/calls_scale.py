"""Benchmark: the call log's queries on 10 million calls in PostgreSQL, through the service code.

    python -m tests.bench --only calls-scale [--calls 10000000] [--database-url URL] [--runs 60]

The dataset is made (once, then reused) by :mod:`tests.bench.calls_data`. Every case calls the real
service (:meth:`telecrm_calls.service.CallLogService.list_calls` with a ``CallQuery``, and
:meth:`telecrm_calls.reports.CallReportService.employee_report`) the way the REST and gRPC APIs do: a
session of its own, the ORM rows, the page cursor. Each case is warmed up, then timed ``runs`` times
with varied parameters (other employees, numbers, months, dispositions), one query at a time; the
table gives the median, the p95 and the max in milliseconds against the issue's targets (p95 < 50 ms
for the lists, < 200 ms for the report).

The first page of every list is checked against the same page computed directly in SQL (from
``call_parties`` for employees, ``party_digits`` for numbers...): a filter the service ignores shows up
as WRONG in the table instead of as a fast time. One run of each case is EXPLAINed (ANALYZE, BUFFERS)
with the statements and parameters the service sent, into ``var/bench/calls_scale_plans.txt``.

Cases need the CallQuery fields they filter on (``employee_id``, ``team_id``, ``contact_id``...); a case
whose field the service does not have yet is skipped with a message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url

from telecrm_calls.service import CallLogService, CallQuery
from telecrm_common.db import Database
from tests.bench import calls_data
from tests.bench.report import Row

LIST_TARGET_MS = 50.0
REPORT_TARGET_MS = 200.0
WARMUP = 5
PLANS_PATH = Path("var/bench/calls_scale_plans.txt")
SEED = 4_008  # issue 4, item 8

Timed = Callable[[], Awaitable[Any]]


@dataclass
class Trial:
    """One timed call of a case, with what it asked for and the page SQL says it must return."""

    label: str
    run: Timed
    truth: tuple[str, tuple[Any, ...]] | None = None  # SQL giving the first page's call ids, args
    prepare: Timed | None = None  # untimed, before the case's runs (e.g. paging to a deep cursor)


@dataclass
class Case:
    name: str
    target_ms: float
    needs: tuple[str, ...] = ()  # CallQuery fields the case filters on
    trials: list[Trial] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class Outcome:
    case: Case
    times_ms: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    explained_ms: float | None = None  # the database's execution time in the EXPLAINed run


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (p95 of 60 runs is the 57th fastest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def months() -> list[tuple[datetime, datetime]]:
    """The 12 whole calendar months (UTC) of the dataset."""
    out = []
    year, month = calls_data.END.year, calls_data.END.month
    for _ in range(12):
        end = datetime(year, month, 1, tzinfo=UTC)
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        out.append((datetime(year, month, 1, tzinfo=UTC), end))
    return out[::-1]


def partial_digits(e164: str, rng: random.Random) -> str:
    """6-8 digits from the end or the middle of a number (how people search a half-remembered number)."""
    number = e164.lstrip("+")
    length = rng.randint(6, 8)
    if rng.random() < 0.5 or len(number) - length < 3:
        return number[-length:]
    start = rng.randint(2, len(number) - length - 1)
    return number[start : start + length]


# --- the cases ------------------------------------------------------------------------------------


@dataclass
class Sample:
    """Varied parameters drawn once from the dataset (deterministically)."""

    employees: list[str]
    teams: list[str]
    contacts: list[str]
    numbers: list[str]


async def sample(conn: asyncpg.Connection, runs: int, rng: random.Random) -> Sample:
    employees = [r[0] for r in await conn.fetch("SELECT employee_id FROM employees ORDER BY employee_id")]
    teams = sorted({r[0] for r in await conn.fetch("SELECT team_id FROM employees")})
    # Numbers and contacts as they appear in the log (busy customers more often, as in real searches).
    rows = await conn.fetch(
        "SELECT contact_id, caller_e164, callee_e164, direction FROM calls TABLESAMPLE SYSTEM (0.05) "
        "REPEATABLE ($1) WHERE contact_id IS NOT NULL ORDER BY call_id",
        SEED,
    )
    rng.shuffle(rows)
    numbers = [r["caller_e164"] if r["direction"] == "inbound" else r["callee_e164"] for r in rows]
    return Sample(
        employees=[rng.choice(employees) for _ in range(runs)],
        teams=[rng.choice(teams) for _ in range(runs)],
        contacts=[r["contact_id"] for r in rows[:runs]],
        numbers=[partial_digits(n, rng) for n in numbers[:runs]],
    )


PAGE = 50
DEEP_PAGE = 10  # the page timed by the "deeper page" case (rows 451-500)


def list_cases(service: CallLogService, s: Sample, runs: int, rng: random.Random) -> list[Case]:
    month_list = months()
    dispositions = ["answered"] * 4 + ["missed", "missed", "no_answer", "busy", "failed", "cancelled"]

    def lister(query: CallQuery) -> Timed:
        return lambda: service.list_calls(query)

    def q(**kwargs: Any) -> CallQuery:
        return CallQuery(limit=PAGE, **kwargs)

    order = "ORDER BY started_at DESC, call_id DESC LIMIT 50"
    employee = Case(
        "default list view: one employee's calls, newest first, page 1", LIST_TARGET_MS, ("employee_id",)
    )
    deep = Case(f"  the same, page {DEEP_PAGE} (keyset cursor)", LIST_TARGET_MS, ("employee_id",))
    filtered = Case("filtered view: employee + one month + disposition", LIST_TARGET_MS, ("employee_id",))
    number = Case("number search: 6-8 digits of a customer's number", LIST_TARGET_MS)
    whole = Case("whole log, newest first, page 1", LIST_TARGET_MS)
    whole_month = Case("whole log, one month, missed only, page 1", LIST_TARGET_MS, ("missed",))
    team = Case("team view: one team's calls, page 1", LIST_TARGET_MS, ("team_id",))
    contact = Case("contact view: one contact's calls, page 1", LIST_TARGET_MS, ("contact_id",))
    fields = {f.name for f in dataclasses.fields(CallQuery)}
    for case in (employee, deep, filtered, whole_month, team, contact):
        missing = [name for name in case.needs if name not in fields]
        if missing:
            case.skipped = f"CallQuery has no {', '.join(missing)} yet"
    for i in range(runs):
        emp = s.employees[i]
        start, end = month_list[i % len(month_list)]
        disp = dispositions[i % len(dispositions)]
        if not employee.skipped:
            employee.trials.append(
                Trial(
                    f"employee_id={emp}",
                    lister(q(employee_id=emp)),
                    (f"SELECT call_id FROM call_parties WHERE employee_id = $1 {order}", (emp,)),
                )
            )
            deep.trials.append(
                Trial(f"employee_id={emp} page {DEEP_PAGE}", *_deep_page(service, q(employee_id=emp)))
            )
            filtered.trials.append(
                Trial(
                    f"employee_id={emp} {start:%Y-%m} disposition={disp}",
                    lister(q(employee_id=emp, started_from=start, started_to=end, dispositions=(disp,))),
                    (
                        "SELECT c.call_id FROM call_parties p JOIN calls c USING (call_id) "
                        "WHERE p.employee_id = $1 "
                        "AND p.started_at >= $2 AND p.started_at < $3 AND c.disposition = $4 "
                        "ORDER BY c.started_at DESC, c.call_id DESC LIMIT 50",
                        (emp, start, end, disp),
                    ),
                )
            )
        digits = s.numbers[i % len(s.numbers)]
        number.trials.append(
            Trial(
                f"number={digits}",
                lister(q(number=digits)),
                (f"SELECT call_id FROM calls WHERE party_digits LIKE $1 {order}", (f"%{digits}%",)),
            )
        )
        whole.trials.append(Trial("no filter", lister(q()), (f"SELECT call_id FROM calls {order}", ())))
        if not whole_month.skipped:
            whole_month.trials.append(
                Trial(
                    f"{start:%Y-%m} missed",
                    lister(q(started_from=start, started_to=end, missed=True)),
                    (
                        "SELECT call_id FROM calls WHERE missed AND started_at >= $1 AND started_at < $2 "
                        + order,
                        (start, end),
                    ),
                )
            )
        if not team.skipped:
            tid = s.teams[i]
            team.trials.append(
                Trial(
                    f"team_id={tid}",
                    lister(q(team_id=tid)),
                    (
                        "SELECT DISTINCT ON (started_at, call_id) call_id FROM call_parties "
                        f"WHERE team_id = $1 {order}",
                        (tid,),
                    ),
                )
            )
        if not contact.skipped and s.contacts:
            cid = s.contacts[i % len(s.contacts)]
            contact.trials.append(
                Trial(
                    f"contact_id={cid}",
                    lister(q(contact_id=cid)),
                    (f"SELECT call_id FROM calls WHERE contact_id = $1 {order}", (cid,)),
                )
            )
    return [employee, deep, filtered, number, whole, whole_month, team, contact]


def _deep_page(service: CallLogService, first: CallQuery) -> tuple[Timed, None, Timed]:
    """Page DEEP_PAGE of a list (timed), and the paging to its cursor (untimed, done beforehand)."""
    cursor: list[str | None] = []

    async def prepare() -> None:
        query = first
        for _ in range(DEEP_PAGE - 1):
            page = await service.list_calls(query)
            query = dataclasses.replace(query, cursor=page.next_cursor)
        cursor.append(query.cursor)

    async def run() -> Any:
        return await service.list_calls(dataclasses.replace(first, cursor=cursor[0]))

    return run, None, prepare


def report_case(db: Database, s: Sample, runs: int) -> Case:
    """The report of one employee over one month (telecrm_calls.reports, when it is there).

    To plug another entry point in, change only this function: ``run`` must produce the whole report.
    """
    case = Case("report: one employee over one month", REPORT_TARGET_MS)
    try:
        reports = importlib.import_module("telecrm_calls.reports")
        service = reports.CallReportService(db)
        make_period = reports.period
        employee_report = service.employee_report
    except (ImportError, AttributeError) as exc:
        case.skipped = f"telecrm_calls.reports.CallReportService.employee_report not available ({exc})"
        return case
    month_list = months()
    for i in range(runs):
        emp = s.employees[i]
        start, end = month_list[(i * 5) % len(month_list)]
        window = make_period(start, end, calls_data.OFFICE_TZ.key)

        def run(emp: str = emp, window: Any = window) -> Awaitable[Any]:
            return employee_report(emp, window)  # type: ignore[no-any-return]

        case.trials.append(Trial(f"employee_id={emp} {start:%Y-%m} ({calls_data.OFFICE_TZ.key})", run))
    return case


# --- running and explaining -----------------------------------------------------------------------


class StatementLog:
    """The statements (and parameters) the service sends while ``recording`` is set."""

    def __init__(self, db: Database) -> None:
        self.recording = False
        self.statements: list[tuple[str, Any]] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if self.recording:
            self.statements.append((statement, parameters))


async def explain(db: Database, log: StatementLog, trial: Trial) -> tuple[str, float | None]:
    """Run the trial once recording its statements, then EXPLAIN (ANALYZE, BUFFERS) each SELECT."""
    log.statements.clear()
    log.recording = True
    try:
        await trial.run()
    finally:
        log.recording = False
    parts: list[str] = []
    total: float | None = None
    async with db.engine.connect() as conn:
        for statement, parameters in log.statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            result = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(str(row[0]) for row in result)
            for line in plan.splitlines():
                if line.strip().startswith("Execution Time:"):
                    total = (total or 0.0) + float(line.split(":")[1].split()[0])
            parts.append(f"-- statement\n{statement}\n-- parameters\n{parameters!r}\n-- plan\n{plan}\n")
        await conn.rollback()
    return "\n".join(parts), total


async def check_truth(conn: asyncpg.Connection, trial: Trial, page: Any) -> str | None:
    """None when the service's first page is the page SQL computes, else what differs."""
    if trial.truth is None or not hasattr(page, "items"):
        return None
    sql, args = trial.truth
    expected = [r[0] for r in await conn.fetch(sql, *args)]
    got = [entry.call.call_id for entry in page.items]
    if got == expected:
        return None
    return (
        f"{trial.label}: service returned {len(got)} calls, SQL {len(expected)} "
        f"(first differing at #{_diff(got, expected)})"
    )


def _diff(a: list[str], b: list[str]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


async def measure(
    case: Case, db: Database, conn: asyncpg.Connection, log: StatementLog
) -> tuple[Outcome, str]:
    outcome = Outcome(case)
    if case.skipped or not case.trials:
        return outcome, ""
    for trial in case.trials:
        if trial.prepare is not None:
            await trial.prepare()
    for trial in case.trials[:WARMUP]:
        await trial.run()
    checked = 0
    for trial in case.trials:
        t0 = time.perf_counter()
        page = await trial.run()
        outcome.times_ms.append((time.perf_counter() - t0) * 1000)
        if checked < 10 and trial.truth is not None:  # the first pages of ten different parameters
            checked += 1
            problem = await check_truth(conn, trial, page)
            if problem:
                outcome.wrong.append(problem)
    # EXPLAIN the run nearest the median (a typical one, not the outlier).
    median = statistics.median(outcome.times_ms)
    typical = min(range(len(case.trials)), key=lambda i: abs(outcome.times_ms[i] - median))
    slowest = max(range(len(case.trials)), key=lambda i: outcome.times_ms[i])
    text = ""
    for title, index in (("typical run", typical), ("slowest run", slowest)):
        plan, executed = await explain(db, log, case.trials[index])
        if title == "typical run":
            outcome.explained_ms = executed
        text += (
            f"=== {case.name.strip()} - {title} ({outcome.times_ms[index]:.1f} ms timed): "
            f"{case.trials[index].label}\n{plan}\n"
        )
    return outcome, text


def rows_of(outcome: Outcome, runs: int) -> Row:
    case = outcome.case
    if case.skipped:
        return Row(case.name, "skipped", case.skipped)
    times = outcome.times_ms
    p95 = percentile(times, 0.95)
    verdict = "ok" if p95 < case.target_ms else "OVER TARGET"
    if outcome.wrong:
        verdict = f"WRONG RESULT ({len(outcome.wrong)} of 10 checked pages differ: {outcome.wrong[0]})"
    db_ms = f"; EXPLAIN ANALYZE {outcome.explained_ms:.2f} ms" if outcome.explained_ms is not None else ""
    return Row(
        f"{case.name} p95",
        f"{p95:,.1f} ms",
        f"median {statistics.median(times):.1f}, max {max(times):.1f} ms, {len(times)} runs{db_ms}; "
        f"target < {case.target_ms:.0f} ms: {verdict}",
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def _run(url: str, runs: int, only: set[str] | None, say: calls_data.Say) -> list[Row]:
    rng = random.Random(SEED)
    conn = await asyncpg.connect(calls_data.plain_url(url))
    db = Database(url, pool_size=4)
    rows: list[Row] = []
    try:
        s = await sample(conn, runs, rng)
        service = CallLogService(db, cursor_secret="calls-scale-bench")
        log = StatementLog(db)
        cases = [*list_cases(service, s, runs, rng), report_case(db, s, runs)]
        plans = [
            "# python -m tests.bench --only calls-scale: EXPLAIN (ANALYZE, BUFFERS), "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        ]
        for case in cases:
            if only and not any(word in case.name for word in only):
                continue
            t0 = time.perf_counter()
            outcome, plan = await measure(case, db, conn, log)
            plans.append(plan)
            row = rows_of(outcome, runs)
            rows.append(row)
            say(f"  {row.measure}: {row.value}  ({row.note})  [{time.perf_counter() - t0:.0f}s]")
        await asyncio.to_thread(_write, PLANS_PATH, "\n".join(plans))
    finally:
        await conn.close()
        await db.dispose()
    return rows


def run(
    calls: int = calls_data.DEFAULT_CALLS,
    database_url: str = calls_data.DEFAULT_DATABASE_URL,
    *,
    runs: int = 60,
    only: set[str] | None = None,
    say: calls_data.Say = print,
) -> list[Row]:
    """Make or reuse the dataset, then time every case; returns the table's rows."""
    dataset, generated = calls_data.prepare(database_url, calls, say=say)
    name = make_url(database_url).database
    rows = [
        Row(
            f"calls dataset: {dataset.calls:,} calls in PostgreSQL ({name})",
            f"{dataset.seconds:,.0f} s",
            ("generated now" if generated else f"reused, generated {dataset.generated_at:%Y-%m-%d %H:%M} UTC")
            + f" by: {calls_data.command(database_url, calls)}",
        )
    ]
    rows += asyncio.run(_run(database_url, runs, only, say))
    rows.append(Row("  plans (EXPLAIN ANALYZE BUFFERS) of each case", "", str(PLANS_PATH)))
    return rows
