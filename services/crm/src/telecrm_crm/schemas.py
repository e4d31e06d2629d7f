"""Answers every crm part gives in the same shape: a document's attachments and its operation log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from telecrm_crm.models import Attachment, AuditEntry


class AttachmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    filename: str = Field(description="Display name, without any directory")
    content_type: str = Field(description="As detected from the file's bytes")
    size: int
    sha256: str
    created_at: datetime
    created_by: str | None

    @classmethod
    def of(cls, attachment: Attachment) -> AttachmentOut:
        return cls.model_validate(attachment)


class HistoryEntryOut(BaseModel):
    """One entry of a document's operation log (``GET .../history``)."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor_subject: str
    actor_employee_id: str | None
    action: str
    changes: dict[str, Any] = Field(description="field -> [old, new]")

    @classmethod
    def of(cls, entry: AuditEntry) -> HistoryEntryOut:
        return cls.model_validate(entry)
