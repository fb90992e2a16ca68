"""Time the redactor on a log line, ordinary and hostile secrets: python bench/redaction.py

Every log line, CLI line and notice passes through `Redactor.redact`; each secret is
registered with the forms output shows it in (repr, JSON, percent- and HTML-escaped, its
lines), so the pattern grows with them. The target: under 50 µs a line with 20 secrets.
"""

import os
import time

from watchkeeper.engine.observe.redaction import Redactor

TARGET = 50e-6
LINE = (
    "2026-11-26T20:44:08Z warning check.failed check=api-health env=production "
    'message="HTTP 503 from https://api.example.com/health (expected 2xx or 3xx): '
    '{\\"status\\": \\"error\\"}" duration_ms=1234.5 severity=critical'
)
HOSTILE = [
    "p'ss\"wörd\\x-9",
    "first-line-7f3a\nsecond-line-c21b",
    "tab\tsep  spaced\t\tkey",
    "100%{done}$HOME-4b",
    "日本語のパスワード🔑ßé",
    "C:\\new\\table\n'ö' \"x\"",
]


def per_line(redactor: Redactor, rounds: int = 20_000) -> float:
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(rounds // 5):
            redactor.redact(LINE)
        best = min(best, (time.perf_counter() - began) / (rounds // 5))
    return best


def main() -> None:
    plain = Redactor()
    for i in range(20):
        plain.add(f"tok-{i:02d}-" + os.urandom(12).hex())
    plain.add("postgresql://app:s3cr3t-pass@db.internal:5432/app")
    hostile = Redactor()
    for i in range(14):
        hostile.add(f"tok-{i:02d}-" + os.urandom(12).hex())
    for secret in HOSTILE:
        hostile.add(secret)
    for label, redactor in (("21 ordinary secrets", plain), ("20 secrets, 6 hostile", hostile)):
        took = per_line(redactor)
        print(
            f"{label:<24} {took * 1e6:6.1f} µs a line  "
            f"({took / TARGET:.2f}x the {TARGET * 1e6:.0f} µs target)  "
            f"{'MET' if took <= TARGET else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
