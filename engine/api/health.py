"""The per-check part of `/health`, kept between requests.

At 10,000 checks, listing every check's status, masking and encoding it is some 200 ms of
work: done per request, it held the event loop that long, and a load balancer polling
/health a few times a second stalled probing and reloads. So the list is built again at
most every `RENEW` seconds, in turns of at most `TURN` seconds of the event loop, and a
check's encoded entry is kept until its status or last run changes. What /health says of
the checks (and the overall `ok`/`degraded` drawn from them) is read at most `FRESH`
seconds before the request; the rest of its body is read per request.
"""

from __future__ import annotations

import json
import logging
import time
from operator import itemgetter
from typing import Any

import anyio
import anyio.lowlevel

from watchkeeper.engine.api import check_rows, views
from watchkeeper.engine.config.instances import split_key
from watchkeeper.engine.observe.redaction import REDACTOR

log = logging.getLogger("watchkeeper.api")

FRESH = 1.0
"""The oldest, in seconds, the checks /health lists may have been read."""
RENEW = 0.5
"""A list older than this is built again after the answer that found it (not before)."""
TURN = 0.005
"""The longest a build holds the event loop before letting other tasks run."""
EVERY = 256
"""Checks handled between two looks at the clock."""


class Encoded(bytes):
    """A value of `encode_object` that is JSON already."""


def encode_object(fields: dict[str, Any]) -> bytes:
    """Return a JSON object as `responses.json_response` writes it (secrets masked), its
    `Encoded` values spliced in as they are."""
    parts = [
        _encode(key) + b": " + (value if isinstance(value, Encoded) else _encode(value))
        for key, value in fields.items()
    ]
    return b"{" + b", ".join(parts) + b"}"


def _encode(value: Any) -> bytes:
    return json.dumps(REDACTOR.redact_obj(value), default=str, allow_nan=False).encode()


class Entry:
    """One check's place in the list: what it shows, and that as JSON."""

    __slots__ = ("check", "encoded", "environment", "generation", "last_run", "status")

    def __init__(self, check: str, environment: str | None, status: str, last_run: Any):
        self.check = check
        self.environment = environment
        self.status = status
        self.last_run = last_run
        self.generation = REDACTOR.generation
        row = {
            "check": check,
            "environment": environment,
            "status": status,
            "last_run": views.iso(last_run),
        }
        self.encoded = _encode(row)

    def shows(self, status: str, last_run: Any) -> bool:
        return (
            self.status == status
            and self.last_run == last_run
            and self.generation == REDACTOR.generation
        )

    def row(self, key: str) -> dict[str, Any]:
        """Return the row `check_rows.judge` reads and writes."""
        return check_rows.status_row(key, self.status, self.last_run)


class HealthChecks:
    """The checks /health lists, as one encoded JSON array, with their overall status."""

    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.encoded = b"[]"
        self.overall = "ok"
        self.built_at = -float("inf")  # time.monotonic() when the last build began
        self.builds = 0
        self.entries: dict[str, Entry] = {}
        self._building: anyio.Event | None = None
        self._wanted: anyio.Event | None = None  # made in the event loop, by the first use

    async def fresh(self) -> tuple[str, bytes]:
        """Return the overall status and the encoded list, read at most `FRESH` s ago."""
        arrived = time.monotonic()
        while self.built_at < arrived - FRESH:
            if self._building is None:
                await self._build()
            else:
                # one build at a time; one that failed leaves `built_at`: build again
                await self._building.wait()
        return self.overall, self.encoded

    def read(self) -> None:
        """Note that an answer was given: a list older than `RENEW` is built again."""
        if self._building is None and time.monotonic() - self.built_at > RENEW:
            self._wanted = self._wanted or anyio.Event()
            self._wanted.set()

    async def renew(self) -> None:
        """Build the list again whenever an answer found it ageing, so that the next ones
        need not wait for it (a task of the server, beside the requests)."""
        while True:
            self._wanted = self._wanted or anyio.Event()
            await self._wanted.wait()
            self._wanted = anyio.Event()
            if self._building is not None:
                continue
            try:
                await self._build()
            except Exception:
                log.exception("building the check list of /health failed")

    async def _build(self) -> None:
        self._building = building = anyio.Event()
        began = time.monotonic()
        try:
            entries = await self._entries()
            # the whole array at once: answers then only join a few pieces
            self.encoded = b"[" + b", ".join(e.encoded for e in entries) + b"]"
            self.overall = "degraded" if any(e.status in check_rows.BAD for e in entries) else "ok"
            self.built_at = began
            self.builds += 1
        finally:
            self._building = None
            building.set()

    async def _entries(self) -> list[Entry]:
        """Return every check's entry in `views.checks`'s order, judged as it judges (both
        decide in check_rows.py)."""
        runtime = self.daemon.runtime
        everything, instances = check_rows.sources(runtime)
        local = check_rows.LocalRuns(runtime)
        listed = check_rows.listed
        kept_get = self.entries.get
        generation = REDACTOR.generation
        found: dict[str, Entry] = {}
        composites: list[str] = []
        items = sorted(instances.items(), key=itemgetter(0))
        turn = time.perf_counter()
        for start in range(0, len(items), EVERY):
            if time.perf_counter() - turn > TURN:
                await anyio.lowlevel.checkpoint()
                turn = time.perf_counter()
            for key, instance in items[start : start + EVERY]:
                if not listed(instance):
                    continue
                if instance.probe_type == "composite":
                    composites.append(key)
                status, latest = local.status(key)
                at = latest.get("at")
                entry = kept_get(key)
                # most entries show what they showed: compared inline, it is most of the work
                if (
                    entry is None
                    or entry.status != status
                    or entry.last_run != at
                    or entry.generation != generation
                ):
                    entry = Entry(*split_key(key), status, at)
                found[key] = entry
        remote = [k for k in everything if k not in instances]
        if remote:
            await self._remote(remote, everything, found, composites)
        if composites:
            self._judge(composites, everything, found, by_check=bool(remote))
        self.entries = found
        if not remote:
            return list(found.values())
        place = check_rows.place
        return [
            entry
            for _, entry in sorted(
                found.items(),
                key=lambda kv: place(kv[0], kv[1].check, kv[1].environment, by_check=True),
            )
        ]

    async def _remote(
        self,
        keys: list[str],
        everything: dict[str, Any],
        found: dict[str, Entry],
        composites: list[str],
    ) -> None:
        """Add the checks another replica runs, as their stored state says."""
        try:
            states = await self.daemon.store.get_all("check_state")
        except Exception:
            states = {}
        for key in sorted(keys):
            instance = everything[key]
            if not check_rows.listed(instance):
                continue
            if instance.probe_type == "composite":
                composites.append(key)
            state = states.get(key) or {}
            status, at = check_rows.remote_status(state), state.get("last_at")
            entry = self.entries.get(key)
            if entry is None or not entry.shows(status, at):
                entry = Entry(*split_key(key), status, at)
            found[key] = entry

    def _judge(
        self,
        composites: list[str],
        instances: dict[str, Any],
        found: dict[str, Entry],
        *,
        by_check: bool,
    ) -> None:
        """Judge the composites from their members, as `views.checks` does (check_rows.py):
        from their rows and their members' rows only."""
        wanted = check_rows.with_members(composites, instances)
        rows = {key: found[key].row(key) for key in wanted if key in found}
        check_rows.judge(rows, instances, by_check=by_check)
        for key in composites:
            row = rows[key]
            entry = found[key]
            if not entry.shows(row["status"], row["last_run"]):
                found[key] = Entry(entry.check, entry.environment, row["status"], row["last_run"])
