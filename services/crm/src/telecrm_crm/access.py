"""Authentication and rights for crm's REST API, on the suite's tokens (:mod:`telecrm_common.auth`).

Each router takes an :class:`Access` and declares what it needs::

    @router.post("/tasks")
    async def create(body: TaskIn, user: Annotated[Principal, Depends(access.require("task.create"))]): ...

``access.current`` only authenticates; ``access.require(right)`` also answers 403 without the right,
before anything is read or changed. Row visibility (own / team / all) is checked by the services with
:meth:`Principal.may_see` and by queries with :func:`visible_filter`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, or_, true
from sqlalchemy.orm import InstrumentedAttribute

from telecrm_common.auth import Access, Principal

__all__ = ["Access", "visible_filter"]


def visible_filter(
    principal: Principal,
    employee_column: InstrumentedAttribute[Any],
    team_column: InstrumentedAttribute[Any] | None = None,
) -> ColumnElement[bool]:
    """A WHERE clause keeping the rows ``principal`` may see (owner employee / owner team columns)."""
    if principal.sees_all:
        return true()
    clauses: list[ColumnElement[bool]] = []
    if principal.employee_id is not None:
        clauses.append(employee_column == principal.employee_id)
    teams = principal.visible_team_ids
    if team_column is not None and teams:
        clauses.append(team_column.in_(sorted(teams)))
    return or_(*clauses) if clauses else false()
