"""The benchmark table: what was measured, the figure, and how."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    measure: str
    value: str
    note: str = ""


def table(rows: list[Row], command: str) -> str:
    width_m = max(len("measure"), *(len(r.measure) for r in rows))
    width_v = max(len("value"), *(len(r.value) for r in rows))
    cpu = f"{os.cpu_count()} cores"
    lines = [
        f"command: {command}",
        f"machine: {platform.machine()}, {cpu}, Python {platform.python_version()}",
        "",
        f"| {'measure'.ljust(width_m)} | {'value'.rjust(width_v)} | note",
        f"|{'-' * (width_m + 2)}|{'-' * (width_v + 2)}|------",
    ]
    lines += [f"| {r.measure.ljust(width_m)} | {r.value.rjust(width_v)} | {r.note}" for r in rows]
    return "\n".join(lines)
