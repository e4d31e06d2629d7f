"""Alembic environment of the calls service: the shared runner over this service's metadata."""

from telecrm_calls.models import CallsBase
from telecrm_common.db import run_migrations_env

run_migrations_env(CallsBase.metadata)
