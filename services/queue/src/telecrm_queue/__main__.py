from telecrm_queue.main import run

run()
