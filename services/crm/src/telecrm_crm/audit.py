"""The operation log: every change to a crm document, who made it and which fields, at a set level.

``CRM_AUDIT_LEVEL``: ``none`` keeps nothing; ``writes`` keeps creations, deletions and status changes
(and archive/restore/merge); ``changes`` keeps every change with its fields' old and new values.
Entries are written in the transaction of the change, so a change that rolls back leaves none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_common.auth import Principal
from telecrm_common.db import utcnow
from telecrm_crm.models import AuditEntry

AuditLevel = Literal["none", "writes", "changes"]
# Actions kept at level "writes"; at "changes" every action is kept.
WRITE_ACTIONS = frozenset({"create", "delete", "status", "archive", "restore", "merge"})


def _plain(value: Any) -> Any:
    """A JSON-safe form of a field value."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The fields whose value differs: ``{field: [old, new]}`` (absent counts as None)."""
    changes: dict[str, list[Any]] = {}
    for key in sorted(set(before) | set(after)):
        old, new = _plain(before.get(key)), _plain(after.get(key))
        if old != new:
            changes[key] = [old, new]
    return changes


class AuditLog:
    def __init__(self, level: AuditLevel = "changes") -> None:
        self.level = level

    def keeps(self, action: str) -> bool:
        if self.level == "none":
            return False
        return self.level == "changes" or action in WRITE_ACTIONS

    async def record(
        self,
        session: AsyncSession,
        actor: Principal | str,
        entity_kind: str,
        entity_id: str,
        action: str,
        changes: Mapping[str, Any] | None = None,
    ) -> None:
        """Add an entry in the caller's transaction (nothing when the level does not keep ``action``)."""
        if not self.keeps(action):
            return
        subject, employee = (actor, None) if isinstance(actor, str) else (actor.subject, actor.employee_id)
        session.add(
            AuditEntry(
                at=utcnow(),
                actor_subject=subject,
                actor_employee_id=employee,
                entity_kind=entity_kind,
                entity_id=entity_id,
                action=action,
                changes=_plain(dict(changes or {})),
            )
        )

    @staticmethod
    async def history(
        session: AsyncSession, entity_kind: str, entity_id: str, *, limit: int = 500
    ) -> Sequence[AuditEntry]:
        """The entries of one document, oldest first."""
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_kind == entity_kind, AuditEntry.entity_id == entity_id)
            .order_by(AuditEntry.at, AuditEntry.id)
            .limit(limit)
        )
        return rows.all()


__all__ = ["AuditLevel", "AuditLog", "diff", "utcnow"]
