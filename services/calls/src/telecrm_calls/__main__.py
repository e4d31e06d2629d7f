"""``python -m telecrm_calls [serve|migrate]``."""

from telecrm_calls.main import run

run()
