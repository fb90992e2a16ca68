"""`watchkeeper event`: post a deploy (or rollback, or any event) to the routes that match it."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

import anyio
import typer

from watchkeeper.engine.cli.root import (
    EXIT_FAILED,
    EXIT_USAGE,
    OutputFormat,
    app,
    console,
    echo_json,
    err_console,
    fail,
    load_or_exit,
)


@app.command()
def event(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="Kind of event: deploy, rollback, migration..."),
    version: str = typer.Option(None, "--version", "-v", help="Version deployed."),
    env: str = typer.Option(None, "--env", "-e", help="Environment it happened in."),
    message: str = typer.Option(None, "--message", "-m", help="A line for people."),
    label: list[str] = typer.Option(
        None, "--label", "-l", help="k=v, repeatable (routes match on labels)."
    ),
    by: str = typer.Option(None, "--by", help="Who did it (default: user@host)."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f"),
) -> None:
    """Post an event (a deploy, a rollback) to the notifiers its routes name.

    It is sent at once from here; a receiver that refuses it is retried by the daemon
    from the state store's outbox, like any notice. The seed's `deploy:monitor`.

    Examples:

        watchkeeper event deploy --version 1.4.2 --env production
        watchkeeper event rollback --version 1.4.1 --env production -m "error rate after 1.4.2"
    """
    from watchkeeper.engine.alerting.alerting import event_notice
    from watchkeeper.engine.alerting.outbox import Outbox
    from watchkeeper.engine.daemon import create_store
    from watchkeeper.engine.plugins import registry
    from watchkeeper.engine.schedule.clock import Clock
    from watchkeeper.engine.state.store import Row, StoreError

    validation = load_or_exit(ctx)
    config = validation.config
    if env is not None and config.environments and env not in config.environments:
        fail(f"unknown environment {env!r} (defined: {', '.join(config.environments)})", EXIT_USAGE)
    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--label expects k=v, got {item!r}", EXIT_USAGE)
        labels[key.strip()] = value.strip()
    payload: dict[str, Any] = {
        "event": kind,
        "version": version,
        "environment": env,
        "message": message,
        "by": by or _author(),
    }
    if labels:
        payload["labels"] = labels
    payload = {k: v for k, v in payload.items() if v not in (None, "")}
    reg = registry()
    store = create_store(config, reg, validation.base_dir)
    outcome: dict[str, Any] = {}

    async def main() -> None:
        await store.open(role="client")
        try:
            clock = Clock()
            notice, targets = event_notice(config, payload, clock.now())
            outbox = Outbox(store, clock, config, reg, validation.base_dir)
            outbox.replica = f"cli:{os.getpid()}"
            deliveries = [
                await outbox.enqueue(name, notice, group=f"event|{notice.id}") for name in targets
            ]
            await outbox.drain(30.0)
            failed = {}
            for delivery in deliveries:
                if delivery.id in outbox.pending:
                    failed[delivery.notifier] = f"{delivery.last_error} (the daemon retries it)"
                    delivery.owner = None  # the daemon takes over what is left
                    await store.put("outbox", {delivery.id: delivery.to_doc()})
                elif delivery.status == "gave_up":
                    failed[delivery.notifier] = f"{delivery.last_error} (not retried)"
            await store.append("events", [Row(key=kind, at=clock.now(), data=payload)])
            await store.append(
                "audit",
                [
                    Row(
                        key="event",
                        at=clock.now(),
                        data={
                            "by": payload["by"],
                            "event": kind,
                            "source": "cli",
                            "details": {k: v for k, v in payload.items() if k != "by"},
                        },
                    )
                ],
            )
            outcome.update(
                event=payload,
                notifiers=targets,
                sent=[t for t in targets if t not in failed],
                failed=failed,
            )
        finally:
            await store.close()

    try:
        anyio.run(main)
    except StoreError as exc:
        fail(f"state store: {exc}", EXIT_FAILED)
    if fmt is OutputFormat.json:
        echo_json(outcome)
    elif not outcome["notifiers"]:
        err_console.print(f"no route matches event {kind!r}: nobody was told")
    else:
        for name in outcome["sent"]:
            console.print(f"sent to {name}")
        for name, error in outcome["failed"].items():
            err_console.print(f"not sent to {name}: {error}")
    raise typer.Exit(EXIT_FAILED if outcome["failed"] else 0)


def _author() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
