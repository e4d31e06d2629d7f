from telecrm_crm.main import run

run()
