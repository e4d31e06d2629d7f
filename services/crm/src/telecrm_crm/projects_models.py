"""Tables of crm's projects: the project card, its work group and its discussion.

A project gathers the journal events and tasks of one piece of work (ISpro's "Projects" register): a
period, a manager and a controller, the customer, the event type new events of the project get, and the
employees who work on it. Those employees, the manager, the controller and the project's team are who
see it; events and tasks point at a project by its id (their tables belong to other parts, so the ids
of employees, teams and contacts here are plain indexed strings too).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from telecrm_common.db import UTCDateTime, utcnow
from telecrm_crm.models import CRMBase

ACTIVE, CLOSED = "active", "closed"
PROJECT_STATUSES: tuple[str, ...] = (ACTIVE, CLOSED)


class Project(CRMBase):
    __tablename__ = "projects"
    __table_args__ = (
        Index("ix_projects_created_at_id", "created_at", "id"),
        Index("ix_projects_manager_id", "manager_id"),
        Index("ix_projects_controller_id", "controller_id"),
        Index("ix_projects_customer_id", "customer_id"),
        Index("ix_projects_team_id", "team_id"),
        Index("ix_projects_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    manager_id: Mapped[str | None] = mapped_column(String(64))
    controller_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    default_event_type: Mapped[str | None] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProjectMember(CRMBase):
    """An employee of the project's work group."""

    __tablename__ = "project_members"
    __table_args__ = (Index("ix_project_members_employee_id", "employee_id"),)

    project_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    employee_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    added_by: Mapped[str] = mapped_column(String(100))


class ProjectComment(CRMBase):
    """A message of the project's discussion."""

    __tablename__ = "project_comments"
    __table_args__ = (Index("ix_project_comments_project_id_created_at", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(36), ForeignKey("projects.id", ondelete="CASCADE"))
    author_subject: Mapped[str] = mapped_column(String(100))
    author_employee_id: Mapped[str | None] = mapped_column(String(64))
    author_name: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
