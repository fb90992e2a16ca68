"""One line per measured figure, the same shape in every bench script:

    <what>: <value>   target <target>   MET|MISSED

so a reader (or a grep for MISSED) sees at once which targets hold on this machine.
"""

from __future__ import annotations

import os


def verdict(what: str, value: str, target: str, met: bool) -> str:
    line = f"{what}: {value}   target {target}   {'MET' if met else 'MISSED'}"
    print(line, flush=True)
    return line


def machine() -> str:
    """The machine a figure was measured on, for the first line of a report."""
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs; load average {one:.2f} {five:.2f} {fifteen:.2f}"
