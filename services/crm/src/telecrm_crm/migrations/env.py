"""Alembic environment of the crm service: the shared runner over every crm table."""

from telecrm_common.db import run_migrations_env
from telecrm_crm.all_models import metadata

run_migrations_env(metadata)
