"""The `email` notifier against real aiosmtpd servers: plain, STARTTLS and implicit TLS."""

from __future__ import annotations

import pytest

from tests.receivers import (
    LogCapture,
    SmtpRecorder,
    alert_of,
    deliver,
    free_port,
    notice_of,
    resolved_of,
)
from watchkeeper.engine.alerting.notifier import DeliveryError
from watchkeeper.plugins.notifiers.email import ASCII_PUNCTUATION as ASCII
from watchkeeper.plugins.notifiers.email import EmailNotifier, EmailOptions

pytestmark = pytest.mark.anyio

PASSWORD = "p4ss-w0rd-smtp-secret"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def options(url: str, **extra):
    return {
        "to": ["dev@example.com", "ops@example.com"],
        "from": "monitoring@example.com",
        "smtp_url": url,
        **extra,
    }


async def test_plain_smtp_multipart_subject_recipients():
    with SmtpRecorder() as smtp:
        await deliver(EmailNotifier, options(f"smtp://127.0.0.1:{smtp.port}"), notice_of())
        (mail,) = smtp.messages
    assert mail.sender == "monitoring@example.com"
    assert mail.recipients == ["dev@example.com", "ops@example.com"]
    assert not mail.tls
    message = mail.email
    assert (
        message["Subject"]
        == "[watchkeeper] api-health@production: response_time 5.2s above 5s (high)"
    )
    assert message["From"] == "monitoring@example.com"
    assert message["To"] == "dev@example.com, ops@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for text in (plain, html):
        assert "response_time" in text
        assert "5.2s" in text
        assert "5s" in text
        assert "https://wiki.example.com/runbooks/api-health" in text
        assert "watchkeeper alerts ack al-7f3a9c" in text
    assert '<a href="https://wiki.example.com/runbooks/api-health">' in html


async def test_message_id_is_stable_across_two_sends_of_a_notice():
    notice = notice_of()
    with SmtpRecorder() as smtp:
        url = f"smtp://127.0.0.1:{smtp.port}"
        await deliver(EmailNotifier, options(url), notice)
        await deliver(EmailNotifier, options(url), notice)
        await deliver(EmailNotifier, options(url), notice_of(resolved_of(), id="wk-resolved"))
        first, second, resolved = (m.email for m in smtp.messages)
    assert first["Message-ID"] == second["Message-ID"] == f"<{notice.id}@example.com>"
    assert resolved["Message-ID"] != first["Message-ID"]
    # the firing and resolved mails of one group thread together
    assert resolved["References"] == first["References"]
    assert "lasted" in resolved.get_body(("plain",)).get_content().lower()
    assert resolved["Subject"] == (
        "[watchkeeper] api-health@production recovered after 16m (was: response_time 5.2s above 5s)"
    )


async def test_html_is_escaped():
    notice = notice_of(alert_of(rule="up", metric=None, summary="<script>alert(1)</script> & more"))
    with SmtpRecorder() as smtp:
        await deliver(EmailNotifier, options(f"smtp://127.0.0.1:{smtp.port}"), notice)
        html = smtp.messages[0].email.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html


async def test_starttls_when_offered_with_login():
    with SmtpRecorder(starttls=True, auth={"alerts": PASSWORD}) as smtp:
        url = f"smtp://alerts:{PASSWORD}@127.0.0.1:{smtp.port}"
        await deliver(EmailNotifier, options(url, verify=False), notice_of())
        (mail,) = smtp.messages
    assert mail.tls
    assert mail.login == "alerts"


async def test_starttls_can_be_forced_off_and_forced_on():
    with SmtpRecorder(starttls=True) as smtp:
        url = f"smtp://127.0.0.1:{smtp.port}"
        await deliver(EmailNotifier, options(url, starttls=False), notice_of())
        assert not smtp.messages[0].tls
    with SmtpRecorder() as plain, pytest.raises(DeliveryError) as caught:
        await deliver(
            EmailNotifier,
            options(f"smtp://127.0.0.1:{plain.port}", starttls=True),
            notice_of(),
            name="dev-team",
        )
    assert not caught.value.retryable  # the server lacks STARTTLS: a configuration problem
    assert "STARTTLS" in str(caught.value)


async def test_smtps_implicit_tls():
    with SmtpRecorder(implicit_tls=True) as smtp:
        url = f"smtps://127.0.0.1:{smtp.port}"
        await deliver(EmailNotifier, options(url, verify=False), notice_of())
        assert smtp.messages[0].tls


async def test_untrusted_certificate_is_final():
    with SmtpRecorder(starttls=True) as smtp, pytest.raises(DeliveryError) as caught:
        await deliver(
            EmailNotifier, options(f"smtp://127.0.0.1:{smtp.port}"), notice_of(), name="dev-team"
        )
    assert not caught.value.retryable
    assert "certificate" in str(caught.value)
    assert smtp.messages == []


async def test_wrong_password_is_final_and_never_quoted():
    with (
        SmtpRecorder(starttls=True, auth={"alerts": "the-right-one"}) as smtp,
        LogCapture() as logs,
    ):
        url = f"smtp://alerts:{PASSWORD}@127.0.0.1:{smtp.port}"
        with pytest.raises(DeliveryError) as caught:
            await deliver(EmailNotifier, options(url, verify=False), notice_of(), name="dev-team")
    assert not caught.value.retryable
    assert str(caught.value).startswith("email `dev-team`: SMTP 535")
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in logs.text


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("451 4.3.0 Mailbox temporarily unavailable", True), ("550 5.1.1 No such user", False)],
)
async def test_refused_recipients(reply, retryable):
    with SmtpRecorder(refuse=reply) as smtp, pytest.raises(DeliveryError) as caught:
        await deliver(EmailNotifier, options(f"smtp://127.0.0.1:{smtp.port}"), notice_of())
    assert caught.value.retryable is retryable
    assert reply[:3] in str(caught.value)


async def test_one_refused_recipient_still_delivers_to_the_others():
    def refuse(address: str) -> str | None:
        return "550 5.1.1 No such user" if address.startswith("ops@") else None

    with SmtpRecorder(refuse=refuse) as smtp, LogCapture() as logs:
        await deliver(EmailNotifier, options(f"smtp://127.0.0.1:{smtp.port}"), notice_of())
        assert smtp.messages[0].recipients == ["dev@example.com"]
    assert "some recipients refused" in logs.text


async def test_unreachable_server_is_retryable_and_quotes_no_password():
    url = f"smtp://alerts:{PASSWORD}@127.0.0.1:{free_port()}"
    with pytest.raises(DeliveryError) as caught:
        await deliver(EmailNotifier, options(url), notice_of(), name="dev-team")
    assert caught.value.retryable
    assert PASSWORD not in str(caught.value)
    assert str(caught.value).startswith("email `dev-team`: cannot reach the SMTP server")


async def test_subject_template_and_prefix():
    opts = options(
        "smtp://127.0.0.1:1",
        subject_prefix="[prod]",
        templates={"subject": "{{ alerts[0].check }} needs you"},
    )
    with SmtpRecorder() as smtp:
        opts["smtp_url"] = f"smtp://127.0.0.1:{smtp.port}"
        await deliver(EmailNotifier, opts, notice_of())
        assert smtp.messages[0].email["Subject"] == "[prod] api-health needs you"


def test_smtp_url_scheme_is_checked_without_quoting_it():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        EmailOptions.model_validate(options(f"http://user:{PASSWORD}@host"))
    assert PASSWORD not in str(caught.value)
    assert "smtp://" in str(caught.value)


@pytest.mark.parametrize(
    "said",
    [
        "HTTP 503 from https://app.example.com/api/health (expected 200): " + "{}" * 150,
        "Verbindung zur Datenbank in Zürich verweigert — " + "é" * 30 + " " + "x" * 40,
        "数据库连接被拒绝 " * 12,
    ],
)
async def test_the_subject_is_the_headline_never_an_empty_encoded_word(said):
    alert = alert_of(rule="up", metric=None, summary=said, severity="critical")
    with SmtpRecorder() as smtp:
        await deliver(EmailNotifier, options(f"smtp://127.0.0.1:{smtp.port}"), notice_of(alert))
        (mail,) = smtp.messages
    raw = mail.data.decode("ascii")  # what went over the wire is ASCII, folded
    head = raw.split("\r\n\r\n", 1)[0]
    assert "=?utf-8?q??=" not in head.lower()
    assert "=?utf-8?b??=" not in head.lower()
    assert all(len(line) <= 78 for line in head.split("\r\n"))
    subject = mail.email["Subject"]
    assert subject == "[watchkeeper] " + notice_of(alert).headline.translate(ASCII)
    assert "{}{}" not in subject  # the body excerpt stays in the body
    if said.isascii():
        assert "=?" not in head  # plain ASCII, not encoded
