from telecrm_messaging.main import run

run()
