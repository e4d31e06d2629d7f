"""Tables of the messaging service. Empty until its issue fills it; migrations start from a baseline."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of the messaging service's own tables (no other service touches them)."""
