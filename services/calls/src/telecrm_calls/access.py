"""Who may read and change what of the call log, on the suite's tokens (:mod:`telecrm_common.auth`).

Every REST route but the health checks needs a bearer token that crm issued (or the enterprise
identity provider's, when configured): 401 without one. What a user sees follows the rules crm applies
to its documents:

- admins (and users whose visibility is ``all``) see every call;
- supervisors see their own calls and those of their teams and of the teams they supervise;
- agents see their own calls, and their team's when their visibility is ``team``.

A call is someone's when one of its parties (any leg: the one that answered, the ones that rang,
transfers) was that employee or a member of that team at the time of the call. A call, missed-call
item or recording the user may not see answers 404, as if it did not exist. Changing the numbers
registry, deleting recordings and the company-wide reports are for admins; reports on an employee
or a team follow visibility. gRPC is service-to-service and carries no user token.
"""

from __future__ import annotations

from fastapi import HTTPException

from telecrm_calls.records import Audience, CallNotFound
from telecrm_calls.service import CallLogService
from telecrm_common.auth import Access, Principal

__all__ = ["Access", "CallsAccess", "admin_only", "audience_of"]


def audience_of(principal: Principal) -> Audience | None:
    """What ``principal`` may see of the call log; None when everything."""
    if principal.sees_all:
        return None
    return Audience(employee_id=principal.employee_id, team_ids=principal.visible_team_ids)


def admin_only(principal: Principal, action: str) -> None:
    """403 unless ``principal`` is an admin (``action`` names what was refused)."""
    if not principal.is_admin:
        raise HTTPException(status_code=403, detail=f"only an administrator may {action}")


def may_see_team(principal: Principal, team_id: str) -> bool:
    return principal.sees_all or team_id in principal.visible_team_ids


class CallsAccess(Access):
    """:class:`Access` plus the call log's own visibility check for routes that name a call."""

    def __init__(self, access: Access, calls: CallLogService) -> None:
        super().__init__(access.verifier)
        self._calls = calls

    async def ensure_call_visible(self, principal: Principal, call_id: str) -> None:
        """404 unless the call exists and the user may see it (existence is not told otherwise)."""
        try:
            await self._calls.ensure_visible(call_id, audience_of(principal))
        except CallNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    async def may_see_employee(self, principal: Principal, employee_id: str) -> bool:
        """Whether the user may see an employee's calls: their own, or a member of a team they see
        (as the numbers registry's copy of crm's employees tells)."""
        if principal.sees_all or employee_id == principal.employee_id:
            return True
        teams = principal.visible_team_ids
        return bool(teams) and await self._calls.team_of(employee_id) in teams
