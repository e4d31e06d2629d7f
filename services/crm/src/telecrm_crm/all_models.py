"""Every crm table on one metadata, for Alembic and for tests that empty the database."""

import telecrm_crm.contacts_models
import telecrm_crm.journal_models
import telecrm_crm.people_models
import telecrm_crm.projects_models
import telecrm_crm.tasks_models
import telecrm_crm.tickets_models  # noqa: F401
from telecrm_crm.models import CRMBase

metadata = CRMBase.metadata
