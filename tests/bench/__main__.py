"""`make bench`: run every benchmark and print one table.

python -m tests.bench [--calls N] [--repeats N] [--only bus|sip]
"""

from __future__ import annotations

import argparse
import sys

from tests.bench import bus_to_calls
from tests.bench.report import Row, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="call lifecycles per bus run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["bus", "sip"], default=None)
    args = parser.parse_args()
    rows: list[Row] = []
    if args.only in (None, "bus"):
        rows += bus_to_calls.run(calls=args.calls, repeats=args.repeats)
    if args.only in (None, "sip"):
        from tests.bench import sip_gateway

        rows += sip_gateway.run(repeats=args.repeats)
    print()
    print(table(rows, "make bench  (" + " ".join(["python -m tests.bench", *sys.argv[1:]]) + ")"))


if __name__ == "__main__":
    main()
