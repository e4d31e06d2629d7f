"""Demo desk phones for `make run`: extension 101 answers after 2 s, 102 never answers (a missed call
after the ring timeout), 103 is busy, 104 answers and hangs up after 5 s. Run:
``python -m telecrm_devstack.phones --port 5070``."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from telecrm_devstack.sipua import PhoneBehaviour, run_phones

DEMO_BEHAVIOURS = {
    "101": PhoneBehaviour(answer_after=2.0),
    "102": PhoneBehaviour(answer_after=None),
    "103": PhoneBehaviour(reject_with=486),
    "104": PhoneBehaviour(answer_after=1.0, hangup_after=5.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5070)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s phones %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_phones(args.port, DEMO_BEHAVIOURS, stop, host=args.host)


if __name__ == "__main__":
    main()
