"""``python -m telecrm_web`` serves the agent desktop."""

from telecrm_web.main import run

run()
