"""Several daemons as one: membership leases, rendezvous hashing, fencing epochs.

Exactly as DESIGN.md Semantics ► Replicas says: each daemon holds a membership lease in
the shared store, timed by the store's clock; check instances are split among the live
members by rendezvous (highest-random-weight) hashing of the instance key, so a member
joining or leaving moves only its share; every state write carries the writer's fencing
epoch, taken fresh from the store whenever membership changes, so a replica that lost its
lease cannot overwrite what its successor wrote. No consensus of our own: the store's
leases and conditional writes are the coordination.

The member lease is what makes a name unique among live daemons, so its holder may take
the name's fence lease from any earlier process (killed, or cut off): a replica restarts
under its own name once a dead predecessor's member lease has run out, and a clean stop
gives both leases back at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from watchkeeper.engine.schedule.clock import Clock
from watchkeeper.engine.state.store import StateStore

log = logging.getLogger("watchkeeper.replicas")

MEMBER = "member:"
FENCE = "fence:"
# the fence lease only hands out epochs; its holder gives it back on a clean stop and a
# successor that holds the member lease takes it over, so it never needs to expire
FENCE_TTL = 10 * 365 * 86400.0


def default_name() -> str:
    """Return this replica's name: $WATCHKEEPER_REPLICA, else the host name."""
    return os.environ.get("WATCHKEEPER_REPLICA") or socket.gethostname()


def weight(member: str, key: str) -> int:
    """Return the rendezvous weight of a member for a key (stable across processes)."""
    digest = hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(members: list[str], key: str) -> str | None:
    """Return the member that owns a key: the one with the highest weight."""
    return max(members, key=lambda m: weight(m, key)) if members else None


class ReplicaError(Exception):
    """This replica cannot join (its name is held by another live daemon)."""


class Membership:
    """Hold this replica's lease, track the live members, supply the fencing epoch."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        name: str,
        lease_time: float,
        *,
        on_change: Callable[[], Awaitable[None]] | None = None,
        info: Callable[[], dict[str, Any]] | None = None,
        location: str | None = None,
    ):
        self.store = store
        self.location = location
        self.locations: dict[str, str | None] = {name: location}  # member -> its location
        self.clock = clock
        self.name = name
        self.lease_time = lease_time
        self.on_change = on_change
        self.info = info or (lambda: {})
        self.members: list[str] = [name]
        self.epoch: int | None = None
        self.changes = 0
        self.lost_at: float | None = None
        self._retry_change = False

    async def join(self) -> None:
        """Take this replica's lease and a first fencing epoch; refuse a duplicate name."""
        lease, began, held = None, anyio.current_time(), False
        # a previous process of this replica that was killed holds the name until its
        # lease expires: wait that long before deciding another daemon really has it
        with anyio.move_on_after(self.lease_time + 1):
            while lease is None:
                lease = await self.store.acquire(
                    MEMBER + self.name, self._holder(), self.ttl, self._data()
                )
                if lease is None:
                    if not held:
                        held = True
                        log.info(
                            "replica name held; waiting for its lease to expire",
                            extra={"replica": self.name, "at_most": self.lease_time + 1},
                        )
                    await anyio.sleep(min(1.0, self.lease_time / 5))
        if lease is None:
            raise ReplicaError(self._duplicate())
        if held:
            log.info(
                "replica name taken over",
                extra={"replica": self.name, "waited": round(anyio.current_time() - began, 2)},
            )
        try:
            await self._refresh()
        except BaseException:
            # a start that fails halfway must not keep the name from the next attempt
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self.leave()
            raise
        if self.epoch is None:  # the name passed to another daemon while we took the fence
            await self.leave()
            raise ReplicaError(self._duplicate())

    def _duplicate(self) -> str:
        return (
            f"another daemon is running as replica {self.name!r}; give each replica its own "
            "name with --replica or WATCHKEEPER_REPLICA"
        )

    def _holder(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def _data(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "location": self.location,
            **self.info(),
        }

    async def _new_epoch(self) -> int | None:
        """Take a fresh fencing epoch; None when this replica no longer holds its name."""
        fence, holder = FENCE + self.name, self._holder()
        # only the holder of the name may touch its fence: a process that stalled past its
        # lease must not take the fence from the successor that has the name now
        if await self.store.acquire(MEMBER + self.name, holder, self.ttl, self._data()) is None:
            return None
        # a fresh grant always carries a greater epoch than any granted before it
        await self.store.release(fence, holder)
        lease = await self.store.acquire(fence, holder, FENCE_TTL)
        if lease is None:
            # Held by a process that is gone (killed, or of a version that never gave it
            # back) or cut off: the member lease makes the name ours, so the fence is ours.
            for other in await self.store.leases(fence):
                if other.name == fence:
                    await self.store.release(fence, other.holder)
            lease = await self.store.acquire(fence, holder, FENCE_TTL)
        # Still ours after the grant? Then any later holder of the name takes its epoch
        # after ours, a greater one. If not, a successor has the name: our epoch is void.
        member = await self.store.acquire(MEMBER + self.name, holder, self.ttl, self._data())
        if lease is None or member is None:
            return None
        return lease.epoch

    async def _refresh(self) -> bool:
        leases = await self.store.leases(MEMBER)
        members = sorted(lease.name[len(MEMBER) :] for lease in leases)
        if self.name not in members:
            members = sorted([*members, self.name])
        located = {lease.name[len(MEMBER) :]: lease.data.get("location") for lease in leases}
        located[self.name] = self.location
        moved = located != self.locations
        self.locations = located
        if members != self.members or moved or self.epoch is None:
            epoch = await self._new_epoch()
            if epoch is None:
                # our lease expired and someone took the name: stop owning anything
                log.error("replica lease lost to another daemon", extra={"replica": self.name})
                self.members = []
                return True
            previous, self.members, self.epoch = self.members, members, epoch
            self.changes += 1
            log.info(
                "replica membership",
                extra={
                    "replica": self.name,
                    "members": members,
                    "previous": previous,
                    "epoch": self.epoch,
                },
            )
            return True
        return False

    @property
    def ttl(self) -> float:
        """The lease each renewal grants: short enough that a dead replica's lease has
        expired, and a survivor has looked, within `lease_time` of its last renewal."""
        return max(0.6, self.lease_time - 2 * self.poll_interval)

    @property
    def poll_interval(self) -> float:
        """How often members renew their lease and look at the others."""
        return max(0.2, self.lease_time / 5)

    async def refresh(self) -> bool:
        """Look at the members now; return True when they changed."""
        return await self._refresh()

    def owns(self, key: str) -> bool:
        return owner(self.members, key) == self.name

    def owns_at(self, key: str, location: str) -> bool:
        """True when this replica runs a check's run from `location`: the rendezvous
        owner among the live members standing there."""
        there = [m for m in self.members if self.locations.get(m) == location]
        return owner(there, key) == self.name

    def live_locations(self) -> set[str]:
        """The locations at least one live member stands in."""
        return {loc for m in self.members if (loc := self.locations.get(m)) is not None}

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        """Renew the lease and watch the members until cancelled."""
        task_status.started()
        while True:
            await anyio.sleep(self.poll_interval)
            try:
                lease = await self.store.acquire(
                    MEMBER + self.name, self._holder(), self.ttl, self._data()
                )
                if lease is None:
                    # our lease expired and someone took the name: stop owning anything
                    log.error("replica lease lost to another daemon", extra={"replica": self.name})
                    self.members = []
                    changed = True
                else:
                    changed = await self._refresh()
                self.lost_at = None
            except Exception as exc:  # the store is away: keep the last view for a lease
                now = self.clock.now()
                if self.lost_at is None:
                    self.lost_at = now
                    log.error("cannot renew the replica lease", extra={"error": str(exc)})
                others = [m for m in self.members if m != self.name]
                # alone, nobody can take over: keep going (fencing still guards the writes)
                if others and now - self.lost_at > self.ttl:
                    # our lease has expired by now: the others have taken our checks, so
                    # stop running them until the store answers again
                    log.error(
                        "replica lease expired during a store outage; standing down",
                        extra={"replica": self.name},
                    )
                    self.members = []  # the old epoch stays: late writes are fenced off
                    await self._changed()
                continue
            if changed or self._retry_change:
                await self._changed()

    async def _changed(self) -> None:
        """Tell the daemon; if taking the new share fails (the store is away), try again
        at the next look rather than stop the daemon."""
        self._retry_change = False
        if self.on_change is None:
            return
        try:
            await self.on_change()
        except Exception as exc:
            self._retry_change = True
            log.error(
                "could not take this replica's share yet; retrying",
                extra={"replica": self.name, "error": str(exc)},
            )

    async def leave(self) -> None:
        """Give back the fence and the member lease, so a successor of this name starts at
        once and the others take over at once, not after the lease expires. Either is
        released only if this process still holds it: a process that lost its name to a
        successor gives away nothing of the successor's."""
        for lease in (FENCE + self.name, MEMBER + self.name):
            try:
                await self.store.release(lease, self._holder())
            except Exception as exc:
                log.warning("cannot give back a lease", extra={"lease": lease, "error": str(exc)})


async def replica_status(store: StateStore) -> list[dict[str, Any]]:
    """Return the live replicas and what they reported about themselves (the shape of
    `watchkeeper status --format json` and /api/status alike)."""
    from datetime import UTC, datetime

    leases = await store.leases(MEMBER)
    return [
        {
            "name": lease.name[len(MEMBER) :],
            "holder": lease.holder,
            "epoch": lease.epoch,
            "expires_at": datetime.fromtimestamp(lease.expires_at, UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            **lease.data,
        }
        for lease in sorted(leases, key=lambda lease: lease.name)
    ]
