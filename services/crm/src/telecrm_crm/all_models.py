"""Every crm table on one metadata, for Alembic and for tests that empty the database."""

from telecrm_crm.models import CRMBase

metadata = CRMBase.metadata
