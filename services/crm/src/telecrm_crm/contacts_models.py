"""Tables of the contacts: companies and persons, their phones and e-mails, custom field definitions.

Why they look like this:

- One ``contacts`` table for companies and persons (``kind``): a person may point at its company
  (``company_id``), and both are looked up, listed and merged the same way.
- Phones are rows of their own, each kept as typed (``raw``, never lost) and, when it parses, as E.164
  (``e164``) with its extension apart. The screen pop looks a caller up by ``e164`` (an equality on an
  index), then by the last digits: ``rdigits`` holds the number's digits reversed, so "ends with these
  N digits" is a range on an index (``rdigits >= '93404963' AND rdigits < '93404963:'``) whatever N
  an installation chooses. On PostgreSQL the column uses the "C" collation, so that the range is byte
  order (a linguistic collation would sort ``:`` before the digits).
- A contact is deleted softly: the row keeps its id, last ``version`` and, after a merge, the contact
  it was ``merged_into`` (clients holding the old id are told where it went). Its phones and e-mails go
  with the deletion, so look-ups and duplicate checks never see it.
- Ids of other parts' documents (employees, teams) are plain indexed strings: those tables belong to
  another part of the service and may live elsewhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from telecrm_common.db import UTCDateTime, utcnow
from telecrm_crm.models import CRMBase

CONTACT_KINDS = ("person", "company")
PHONE_KINDS = ("mobile", "work", "home", "fax", "other")
FIELD_TYPES = ("text", "number", "date", "choice")

# Digits reversed, compared byte by byte (see the module's docstring).
REVERSED_DIGITS = String(32).with_variant(String(32, collation="C"), "postgresql")


class Contact(CRMBase):
    """A company or a person."""

    __tablename__ = "contacts"
    __table_args__ = (
        Index("ix_contacts_name_key_id", "name_key", "id"),
        Index("ix_contacts_updated_at_id", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # person, company
    name: Mapped[str] = mapped_column(String(300))
    name_key: Mapped[str] = mapped_column(String(300))  # casefolded name: sorting and search
    job_title: Mapped[str | None] = mapped_column(String(200))  # persons
    tax_id: Mapped[str | None] = mapped_column(String(64))  # companies: VAT / registration number
    company_id: Mapped[str | None] = mapped_column(ForeignKey("contacts.id"), index=True)  # persons
    address: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    responsible_employee_id: Mapped[str | None] = mapped_column(String(64), index=True)
    owner_employee_id: Mapped[str | None] = mapped_column(String(64), index=True)  # visibility
    owner_team_id: Mapped[str | None] = mapped_column(String(64), index=True)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A client's key for a creation (Idempotency-Key, gRPC request_id): a repeat returns the contact.
    request_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))  # the user (subject) who created it
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    merged_into: Mapped[str | None] = mapped_column(String(36))


class ContactPhone(CRMBase):
    """A phone number of a contact, as typed and as E.164."""

    __tablename__ = "contact_phones"
    __table_args__ = (
        Index("ix_contact_phones_e164", "e164"),
        Index("ix_contact_phones_rdigits", "rdigits"),
        Index("ix_contact_phones_contact_id_position", "contact_id", "position"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16))  # mobile, work, home, fax, other
    raw: Mapped[str] = mapped_column(String(64))  # as typed, extension included
    e164: Mapped[str | None] = mapped_column(String(20))  # None when the number could not be parsed
    extension: Mapped[str | None] = mapped_column(String(16))
    valid: Mapped[bool] = mapped_column(Boolean, default=False)  # a number of an assigned range
    rdigits: Mapped[str | None] = mapped_column(REVERSED_DIGITS)  # None when it has no digits
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactEmail(CRMBase):
    """An e-mail address of a contact."""

    __tablename__ = "contact_emails"
    __table_args__ = (
        Index("ix_contact_emails_email_key", "email_key"),
        Index("ix_contact_emails_contact_id_position", "contact_id", "position"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    email: Mapped[str] = mapped_column(String(320))  # as typed
    email_key: Mapped[str] = mapped_column(String(320))  # lowercased: duplicates and search


class ContactFieldDefinition(CRMBase):
    """A custom field contacts may carry: its name (the key in ``custom_fields``), label and type."""

    __tablename__ = "contact_field_definitions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))  # text, number, date, choice
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)  # for type choice
    position: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
