from telecrm_gateway.main import run

run()
