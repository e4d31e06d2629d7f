"""Tables of the queue service. Empty until its issue fills it; migrations start from a baseline."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of the queue service's own tables (no other service touches them)."""
