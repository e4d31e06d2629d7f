"""Tables of people and access: teams, employees, users (log-ins with their rights) and refresh tokens.

An employee is a person of the company (name, e-mail, extension, team, supervisor); a user is a log-in
(password hash, roles, rights) that is usually one employee. Employees are deleted softly: other
documents (tasks, events, calls) keep naming them, so the row stays with ``deleted_at`` set and its
extension freed. ``version`` counts the changes of a row: it is the optimistic-locking token of the
REST API and the ``version`` of the row's events on the bus.

A refresh token is stored only as its SHA-256 (it is a random 256-bit string, so a fast hash is
enough); the tokens rotated from one log-in share a ``family_id``, so that the reuse of a rotated
token can revoke the whole family.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from telecrm_common.db import UTCDateTime, utcnow
from telecrm_crm.models import CRMBase


class Team(CRMBase):
    """A group of employees; its supervisor (an employee) sees the team's data."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # An employee; no foreign key, because employees already point at teams (the service checks it).
    supervisor_id: Mapped[str | None] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Employee(CRMBase):
    """A person of the company, as every crm document and the call log name them."""

    __tablename__ = "employees"
    __table_args__ = (Index("ix_employees_name_id", "name", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    extension: Mapped[str | None] = mapped_column(String(15), unique=True)  # freed on deletion
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), index=True)
    supervisor_id: Mapped[str | None] = mapped_column(ForeignKey("employees.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(CRMBase):
    """A log-in: who may enter, as which employee, with which roles and rights."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)  # lowercase
    password_hash: Mapped[str | None] = mapped_column(String(255))  # argon2; None: no password log-in
    employee_id: Mapped[str | None] = mapped_column(ForeignKey("employees.id"), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    visibility: Mapped[str] = mapped_column(String(8), default="own")
    granted_rights: Mapped[list[str]] = mapped_column(JSON, default=list)  # beyond the roles' defaults
    revoked_rights: Mapped[list[str]] = mapped_column(JSON, default=list)  # taken from the defaults
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)  # since the last success or lock
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefreshToken(CRMBase):
    """One refresh token: used once (``used_at``), then replaced by the next of its family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the token
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # rotated: a new token replaced it
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))  # logout, reuse, disabled, password...
    client: Mapped[str | None] = mapped_column(String(300))  # the user agent that logged in
