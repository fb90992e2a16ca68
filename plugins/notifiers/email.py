"""The `email` notifier: plain-text and HTML mail over SMTP."""

from __future__ import annotations

import email.utils
import hashlib
import json
import ssl
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from watchkeeper.engine.alerting.notice import Notice
from watchkeeper.engine.alerting.notifier import DeliveryError, Notifier, NotifyContext
from watchkeeper.engine.alerting.templates import render
from watchkeeper.engine.hookspecs import hookimpl
from watchkeeper.plugins.notifiers import messages
from watchkeeper.plugins.notifiers.delivery import ReceiverError, budget, secret_parts, snippet
from watchkeeper.schema.alerting import NotifierOptions
from watchkeeper.schema.base import Secret
from watchkeeper.schema.units import format_duration

DEFAULTS = {"subject": messages.HEADLINE, "text": messages.TEXT, "html": messages.HTML}
SCHEMES = ("smtp", "smtps")
SUBJECT_LIMIT = 200
"""Characters of a subject; the headline is shorter, an override may not be."""
# the punctuation of our own headlines, in plain ASCII: a subject that is ASCII needs no
# encoding at all, and most are
ASCII_PUNCTUATION = str.maketrans({"·": "-", "×": "x", "…": "...", "—": "-", "–": "-", "→": "->"})


class EmailOptions(NotifierOptions):
    """Send mail through an SMTP server (STARTTLS on smtp://, TLS on smtps://)."""

    template_names = ("subject", "text", "html")
    to: list[str] = Field(min_length=1, description="Recipients.")
    from_: str = Field("watchkeeper@localhost", alias="from", description="Sender address.")
    smtp_url: Secret = Field(
        description="smtp://user:pass@host:587 (STARTTLS when offered) or smtps://host:465 (TLS)."
    )
    starttls: bool | None = Field(
        None, description="Force STARTTLS on or off (default: use it when the server offers it)."
    )
    verify: bool = Field(True, description="Verify the server's TLS certificate.")
    subject_prefix: str = Field("[watchkeeper]", description="Put before every subject.")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: Secret) -> Secret:
        # the message must not quote the value: it holds the password
        try:
            scheme = urlsplit(value.get_secret_value()).scheme
        except ValueError:
            scheme = ""
        if scheme not in SCHEMES:
            raise ValueError("must start with smtp:// (STARTTLS when offered) or smtps:// (TLS)")
        return value


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to reach the SMTP server, read from `smtp_url`."""

    host: str
    port: int | None
    username: str | None
    password: str | None
    implicit_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=parts.scheme == "smtps",
        )


def _address(value: str) -> str:
    return email.utils.parseaddr(value)[1] or value


def _domain(sender: str) -> str:
    domain = _address(sender).rpartition("@")[2]
    return domain or "watchkeeper.local"


def message_id(notice: Notice, sender: str) -> str:
    """Return the Message-ID of a notice: the same on every attempt, so a resend is
    recognisable (and dropped as a duplicate by clients that check)."""
    return f"<{notice.id}@{_domain(sender)}>"


def thread_id(notice: Notice, sender: str) -> str | None:
    """Return a References id shared by every mail about one group, so they thread."""
    if notice.kind != "alert" or not (notice.group or notice.alerts):
        return None
    key = notice.group or {"alerts": sorted(a.id for a in notice.alerts)}
    digest = hashlib.sha256(json.dumps([notice.route, key], sort_keys=True, default=str).encode())
    return f"<group-{digest.hexdigest()[:20]}@{_domain(sender)}>"


class Subject(str):
    """A Subject folded by `email.header`: plain words when it is ASCII, RFC 2047 encoded
    words when it is not. The `email` package's own folding can write an empty encoded
    word (`=?utf-8?q??=`) at a line break, which mail clients show as garbage, and moves
    a long ASCII subject whole to a second line. (A header value with a `name` and a
    `fold()` is used as is: `email.policy`.)"""

    name = "Subject"

    def fold(self, *, policy: Any) -> str:
        charset = "us-ascii" if self.isascii() else "utf-8"
        folded = Header(str(self), charset, header_name=self.name).encode(
            linesep=policy.linesep, maxlinelen=policy.max_line_length or 78
        )
        return f"{self.name}: {folded}{policy.linesep}"


def subject_of(prefix: str, headline: str) -> str:
    """Return the Subject of a mail: the headline on one line, ASCII where it can be."""
    text = " ".join(f"{prefix} {headline}".translate(ASCII_PUNCTUATION).split())
    if len(text) > SUBJECT_LIMIT:
        text = text[: SUBJECT_LIMIT - 3].rstrip() + "..."
    return Subject(text)


def build_message(notice: Notice, options: EmailOptions, name: str) -> EmailMessage:
    """Return the mail for a notice: multipart/alternative with plain text and HTML."""
    extra = {**messages.helpers(notice), "notifier": name}
    headline = render("subject", notice, options, DEFAULTS, **extra)
    extra["headline"] = headline
    msg = EmailMessage()
    msg["Subject"] = subject_of(options.subject_prefix, headline)
    msg["From"] = options.from_
    msg["To"] = ", ".join(options.to)
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = message_id(notice, options.from_)
    thread = thread_id(notice, options.from_)
    if thread:
        msg["References"] = thread
        msg["In-Reply-To"] = thread
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    msg["X-Watchkeeper-Notice"] = notice.id
    msg.set_content(render("text", notice, options, DEFAULTS, **extra) + "\n")
    html = render("html", notice, options, DEFAULTS, html=True, **extra)
    msg.add_alternative(html, subtype="html")
    return msg


class EmailNotifier(Notifier):
    type = "email"
    Options = EmailOptions

    def preview(self, notice: Notice, options: EmailOptions) -> str:
        """Return the headers and plain-text part of the mail this notice would be."""
        msg = build_message(notice, options, "preview")
        head = "".join(f"{k}: {msg[k]}\n" for k in ("Subject", "From", "To", "Message-ID"))
        return head + "\n" + msg.get_body(("plain",)).get_content()

    async def send(self, notice: Notice, options: EmailOptions, ctx: NotifyContext) -> None:
        import aiosmtplib

        label = f"email `{ctx.name}`"
        url = options.smtp_url.get_secret_value()
        server = SmtpServer.from_url(url)
        hidden = [*secret_parts(url), server.password or ""]
        msg = build_message(notice, options, ctx.name)
        smtp = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,  # None: 465 for smtps, 587 with starttls: true, else 25
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            start_tls=False if server.implicit_tls else options.starttls,
            validate_certs=options.verify,
            timeout=budget(ctx.timeout),
        )
        try:
            async with smtp:
                refused, _reply = await smtp.send_message(
                    msg, sender=_address(options.from_), recipients=options.to
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise ReceiverError(
                f"{label}: every recipient refused (SMTP {', '.join(map(str, codes))})",
                retryable=all(400 <= c < 500 for c in codes),
                status=codes[0] if codes else None,
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise ReceiverError(
                f"{label}: SMTP {exc.code} ({snippet(exc.message, hidden)})",
                retryable=400 <= exc.code < 500,
                status=exc.code,
            ) from None
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise DeliveryError(
                f"{label}: no answer within {format_duration(ctx.timeout)}", retryable=True
            ) from None
        except OSError as exc:  # refused, unreachable, disconnected, TLS failures
            if _untrusted(exc):
                raise DeliveryError(
                    f"{label}: the server's TLS certificate is not trusted "
                    "(set `verify: false` only for a test server)",
                    retryable=False,
                ) from None
            reason = snippet(str(exc), hidden)
            raise DeliveryError(
                f"{label}: cannot reach the SMTP server ({reason or type(exc).__name__})",
                retryable=True,
            ) from None
        except aiosmtplib.SMTPException as exc:
            # what is left is the server lacking something asked of it (STARTTLS, AUTH,
            # SMTPUTF8): a configuration problem that retrying does not fix
            raise DeliveryError(f"{label}: {snippet(str(exc), hidden)}", retryable=False) from None
        if refused:
            ctx.log.warning(
                "some recipients refused the notice",
                extra={"notifier": ctx.name, "notice_id": notice.id, "refused": sorted(refused)},
            )


def _untrusted(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@hookimpl
def watchkeeper_notifiers():
    return [EmailNotifier]
