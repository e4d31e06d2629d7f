"""Tables of the crm service shared by all its parts: the outbox, the operation log and attachments.

Each part keeps its own tables in its own module (``people_models``, ``contacts_models``...), all on
:class:`CRMBase`'s metadata; :mod:`telecrm_crm.all_models` imports them all for Alembic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, MetaData, String
from sqlalchemy.orm import Mapped, mapped_column

from telecrm_common.db import NAMING_CONVENTION, Base, UTCDateTime, utcnow


class CRMBase(Base):
    """Base of this service's models, with a metadata of its own (only the crm tables)."""

    __abstract__ = True
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class OutboxMessage(CRMBase):
    """An event to publish, written in the transaction that made it (see :mod:`telecrm_common.outbox`)."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    subject: Mapped[str] = mapped_column(String)
    msg_id: Mapped[str] = mapped_column(String)
    message_type: Mapped[str] = mapped_column(String)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(CRMBase):
    """One line of the operation log: who did what to which document, and which fields changed."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity_kind", "entity_id", "at"),
        Index("ix_audit_log_actor", "actor_subject", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_subject: Mapped[str] = mapped_column(String)  # user id, or "system:<component>"
    actor_employee_id: Mapped[str | None] = mapped_column(String)
    entity_kind: Mapped[str] = mapped_column(String(32))  # contact, event, task, project, ticket...
    entity_id: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String(32))  # create, update, delete, status, archive, restore...
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # field -> [old, new]


class Attachment(CRMBase):
    """A file attached to a document; its bytes live under ``CRM_ATTACHMENTS_DIR`` by a random key."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_owner", "owner_kind", "owner_id"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(32))  # event, task, project, ticket, ticket_note...
    owner_id: Mapped[str] = mapped_column(String)
    filename: Mapped[str] = mapped_column(String(255))  # display name, sanitised
    content_type: Mapped[str] = mapped_column(String(100))  # as detected from the bytes
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String)
