"""`watchkeeper notify test NOTIFIER`: send one test message, directly, and say what happened."""

from __future__ import annotations

import difflib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import typer

from watchkeeper.engine.alerting.notice import Notice, NoticeAlert, new_notice_id
from watchkeeper.engine.cli.root import (
    EXIT_FAILED,
    EXIT_USAGE,
    OutputFormat,
    app,
    echo,
    echo_json,
    fail,
    load_or_exit,
)
from watchkeeper.engine.observe.redaction import REDACTOR

notify_app = typer.Typer(
    help="""Send a test message through a notifier, to see that it reaches people.

    Examples:

        watchkeeper notify test alerts
    """,
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(notify_app, name="notify")

TEST_CHECK = "watchkeeper-test"


def sample_notice(notifier: str, severities: list[str]) -> Notice:
    """Return the notice `notify test` sends: one sample firing alert, marked as a test."""
    now = datetime.now(UTC).replace(microsecond=0)
    notice_id = new_notice_id()
    # the least severe level: a test should not wake anyone with a high-urgency page
    severity = severities[-1] if severities else "info"
    alert = NoticeAlert(
        id="test-" + notice_id.removeprefix("wk-"),
        check=TEST_CHECK,
        environment=None,
        rule="test",
        severity=severity,
        status="firing",
        summary="This is a test notification; nothing is wrong and no action is needed",
        started_at=now.isoformat().replace("+00:00", "Z"),
        metric="response_time",
        value=2.5,
        value_text="2.5s",
        threshold=2.0,
        threshold_text="2s",
        direction="above",
        labels={"test": "true"},
        runbook="https://github.com/watchkeeper/watchkeeper/tree/main/docs/notifiers.md",
        change="firing",
    )
    return Notice(
        id=notice_id,
        kind="test",
        status="firing",
        title=f"Test notification from watchkeeper to `{notifier}`",
        severity=severity,
        alerts=[alert],
        group={"check": TEST_CHECK},
        text=(
            f"Sent by `watchkeeper notify test {notifier}` to check that this receiver is "
            "reachable and messages look right. The alert below is a sample."
        ),
        created_at=time.time(),
    )


async def deliver(plugin: Any, notice: Notice, options: Any, ctx: Any) -> None:
    """Send a notice once, within the notifier's timeout (TimeoutError past it)."""
    import anyio

    with anyio.fail_after(options.timeout):
        await plugin.send(notice, options, ctx)


@notify_app.command("test")
def notify_test(
    ctx: typer.Context,
    notifier: str = typer.Argument(..., help="Name of a notifier in monitor.yaml."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """Send a test message through one notifier and say whether it was accepted.

    The message goes directly to the notifier (not through routes or the outbox): a
    sample firing alert marked as a test, rendered with the notifier's templates.
    Exit 0 when accepted, 1 when refused or unreachable (the reason is printed, secrets
    masked), 2 for a notifier that monitor.yaml does not define.

    Examples:

        watchkeeper notify test alerts
        watchkeeper notify test infra --format json
    """
    import anyio

    from watchkeeper.engine.alerting.notifier import DeliveryError, NotifyContext
    from watchkeeper.engine.plugins import registry

    validation = load_or_exit(ctx)
    config = validation.config
    options = config.notifiers.get(notifier)
    if options is None:
        known = sorted(config.notifiers)
        close = difflib.get_close_matches(notifier, known, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        listed = ", ".join(known) if known else "none"
        fail(
            f"no notifier named `{notifier}` in monitor.yaml{hint} (defined: {listed})", EXIT_USAGE
        )
    plugin = registry().get("notifier", options.type)()
    notice = sample_notice(notifier, list(config.severities))
    notify_ctx = NotifyContext(
        name=notifier,
        log=logging.getLogger(f"watchkeeper.notify.{notifier}"),
        timeout=options.timeout,
        base_dir=validation.base_dir,
    )
    error: str | None = None
    retryable: bool | None = None
    start = time.perf_counter()
    try:
        anyio.run(deliver, plugin, notice, options, notify_ctx)
    except TimeoutError:
        error, retryable = (
            f"{options.type} `{notifier}`: no answer within {options.timeout:g}s",
            True,
        )
    except DeliveryError as exc:
        error, retryable = str(exc), exc.retryable
    except Exception as exc:  # a plugin's bug: say so without a traceback full of values
        error, retryable = f"{options.type} `{notifier}`: {type(exc).__name__}: {exc}", None
    elapsed = time.perf_counter() - start
    error = REDACTOR.redact(error) if error else None
    if fmt == OutputFormat.json:
        result: dict[str, Any] = {
            "notifier": notifier,
            "type": options.type,
            "sent": error is None,
            "notice_id": notice.id,
            "duration_ms": round(elapsed * 1000),
            "error": error,
            "retryable": retryable,
        }
        echo_json(result)
    elif error is None:
        echo(
            f"sent: `{notifier}` ({options.type}) accepted the test notice {notice.id} "
            f"in {elapsed * 1000:.0f}ms"
        )
    else:
        echo(f"not sent: {error}", err=True)
        if retryable:
            echo("(a temporary failure: the daemon would retry it)", err=True)
    raise typer.Exit(0 if error is None else EXIT_FAILED)
