"""The `apprise` notifier, through apprise's json:// service pointed at a real receiver."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.receivers import HttpRecorder, LogCapture, deliver, notice_of, resolved_of
from watchkeeper.engine.alerting.notifier import DeliveryError
from watchkeeper.plugins.notifiers.apprise import AppriseNotifier

pytestmark = pytest.mark.anyio

TOKEN = "apprise-secret-token-77"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def receiver():
    with HttpRecorder() as recorder:
        yield recorder


def service(receiver: HttpRecorder, path: str = "one") -> str:
    return f"json://127.0.0.1:{receiver.port}/{path}/{TOKEN}"


async def test_title_and_body_reach_the_service(receiver):
    await deliver(AppriseNotifier, {"urls": [service(receiver)]}, notice_of())
    (request,) = receiver.requests
    body = request.json()
    assert body["title"] == "api-health@production: response_time 5.2s above 5s (high)"
    assert "response_time is 5.2s" in body["message"]
    assert "https://wiki.example.com/runbooks/api-health" in body["message"]
    assert body["type"] == "failure"  # high; medium and below: warning


async def test_resolved_is_success(receiver):
    await deliver(AppriseNotifier, {"urls": [service(receiver)]}, notice_of(resolved_of()))
    body = receiver.requests[0].json()
    assert body["type"] == "success"
    assert "Lasted:     16m" in body["message"]


async def test_failure_is_retryable_and_a_retry_skips_services_that_accepted(receiver):
    with HttpRecorder(500) as failing:
        plugin = AppriseNotifier()
        urls = [service(receiver), service(failing, "two")]
        notice = notice_of()
        with LogCapture() as logs, pytest.raises(DeliveryError) as caught:
            await deliver(plugin, {"urls": urls}, notice, name="chat")
        assert caught.value.retryable
        assert str(caught.value) == "apprise `chat`: URL #2 of 2 failed"
        assert TOKEN not in str(caught.value)
        assert TOKEN not in logs.text
        failing.always(200)
        await deliver(plugin, {"urls": urls}, notice, name="chat")
    assert len(receiver.requests) == 1  # heard it once
    assert len(failing.requests) == 2


async def test_an_url_apprise_does_not_know_is_final():
    with pytest.raises(DeliveryError) as caught:
        await deliver(
            AppriseNotifier, {"urls": [f"nosuchservice://{TOKEN}"]}, notice_of(), name="chat"
        )
    assert not caught.value.retryable
    assert TOKEN not in str(caught.value)


def test_missing_library_is_a_final_error_naming_the_extra():
    script = textwrap.dedent(
        """
        import sys, anyio
        sys.modules["apprise"] = None  # as if the extra were not installed
        from tests.receivers import deliver, notice_of
        from watchkeeper.engine.alerting.notifier import DeliveryError
        from watchkeeper.plugins.notifiers.apprise import AppriseNotifier
        try:
            anyio.run(deliver, AppriseNotifier, {"urls": ["json://x"]}, notice_of())
        except DeliveryError as exc:
            print(exc.retryable, exc)
        """
    )
    from tests.conftest import REPO

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.stdout.strip() == (
        "False apprise `target`: the apprise library is not installed "
        "(pip install 'watchkeeper[apprise]')"
    ), result.stderr
