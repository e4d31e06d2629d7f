"""`make call`: place one real SIP call at the running suite and show the record it left.

Reads var/devstack.json (written by `make run`) for the gateway's SIP port and the call log's URL, and
logs in to crm as the local admin (var/admin-password) to read the call log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx

from telecrm_devstack.demo_data import admin_headers
from telecrm_devstack.launcher import STATE_FILE
from telecrm_devstack.processes import free_sip_port
from telecrm_devstack.sipua import place_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extension", default="101", help="extension or line to call (default 101)")
    parser.add_argument("--seconds", type=float, default=3.0, help="talk time after the answer")
    parser.add_argument("--caller", default="+15550001234", help="the number presented as the caller")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args()
    state_path = args.root / "var" / STATE_FILE
    if not state_path.exists():
        sys.exit("the suite is not running here: start it with `make run` in another terminal")
    state = json.loads(state_path.read_text())
    target = f"sip:{args.extension}@127.0.0.1:{state['sip_port']}"
    print(f"calling {target} from {args.caller} ...", flush=True)
    result = place_call(target, seconds=args.seconds, local_port=free_sip_port(), caller=args.caller)
    outcome = f"answered, talked {result.talk_seconds:.1f}s" if result.answered else "not answered"
    print(f"call ended: SIP {result.status} ({outcome})")
    calls_url = state["http"]["calls"]
    password_file = args.root / "var" / "admin-password"
    password = os.environ.get("CRM_BOOTSTRAP_ADMIN_PASSWORD") or password_file.read_text().strip()
    headers = admin_headers(state["http"]["crm"], "admin", password)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = httpx.get(f"{calls_url}/calls", params={"limit": 1}, headers=headers, timeout=5)
        items = response.json().get("items", [])
        if items and items[0].get("state") == "ended":
            print(f"newest record in {calls_url}/calls:")
            print(json.dumps(items[0], indent=2, ensure_ascii=False))
            return
        time.sleep(0.3)
    print(f"no ended record yet: look at {calls_url}/calls")


if __name__ == "__main__":
    main()
