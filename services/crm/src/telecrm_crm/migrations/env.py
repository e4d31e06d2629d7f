from telecrm_common.db import run_migrations_env
from telecrm_crm.models import Base

run_migrations_env(Base.metadata)
