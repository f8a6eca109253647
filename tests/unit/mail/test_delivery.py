from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from digest.config import Settings
from digest.db import transaction
from digest.mail.compose import build_message, compose
from digest.mail.render import RenderedEmail
from digest.mail.transport import DeliveryError, OutboxMailer, SmtpMailer, make_mailer
from digest.models import Subscriber, SubscriberStatus
from digest.services import Services
from digest.subscribers.confirmation import send_confirmation
from tests.support.env import SmtpSink, free_port

UNSUBSCRIBE = "https://digest.example.org/unsubscribe/tok-u"


def rendered(subject: str = "Your paper digest: 2 new papers") -> RenderedEmail:
    return RenderedEmail(
        subject=subject,
        text="1. Über-effiziente Diffusion\n   More like this: https://x.example/m\n",
        html='<html><body><p style="color:red">Über-effiziente Diffusion — 漢字</p></body></html>',
    )


def parts_of(message: EmailMessage) -> list[tuple[str, str | None]]:
    return [(part.get_content_type(), part.get_content_charset()) for part in message.iter_parts()]


def test_a_message_through_a_real_smtp_server_keeps_headers_and_parts(
    settings: Settings, smtp_sink: SmtpSink
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    mail = compose(
        settings,
        to="reader@example.org",
        rendered=rendered("Ihr Überblick: 2 neue Papiere — 🚀 café"),
        unsubscribe_url=UNSUBSCRIBE,
    )
    with SmtpMailer(smtp_sink.url).open() as connection:
        connection.send(mail)

    (received,) = smtp_sink.to("reader@example.org")
    assert smtp_sink.envelopes == [("digest@example.org", ["reader@example.org"])]
    assert received["Subject"] == "Ihr Überblick: 2 neue Papiere — 🚀 café"
    assert received["From"] == "Paper digest <digest@example.org>"
    assert received["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", str(received["Message-ID"]))
    assert received["Message-ID"] == mail.message_id
    sent_at = parsedate_to_datetime(str(received["Date"]))
    assert sent_at.utcoffset() == timedelta(0)
    assert before <= sent_at <= datetime.now(UTC)

    assert received.get_content_type() == "multipart/alternative"
    assert parts_of(received) == [("text/plain", "utf-8"), ("text/html", "utf-8")]
    text = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    # Text travels in canonical form, CRLF line ends, and decodes that way from quoted-printable.
    assert text.get_content().replace("\r\n", "\n") == rendered().text
    assert "Über-effiziente Diffusion — 漢字" in html.get_content()


def test_a_long_unsubscribe_url_stays_a_plain_header_a_mail_client_can_read(
    settings: Settings, smtp_sink: SmtpSink
) -> None:
    long_url = "https://digest.example.org/unsubscribe/" + "Ab3_-" * 30 + ".signature-part-of-the-token"
    mail = compose(settings, to="reader@example.org", rendered=rendered(), unsubscribe_url=long_url)
    with SmtpMailer(smtp_sink.url).open() as connection:
        connection.send(mail)
    (raw,) = smtp_sink.raw
    assert f"\r\nList-Unsubscribe: <{long_url}>\r\n".encode() in raw
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0].split(b"Subject:")[0]


@dataclass
class ScriptedServer:
    """An SMTP server whose replies the test chooses, and which notes the connection of each message."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 OK"
    received: list[tuple[object, EmailMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.data_reply.startswith("250"):
            return self.data_reply
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append((session.peer, message))
        return "250 OK"


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedServer, str]]:
    handler = ScriptedServer()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


def test_several_messages_share_one_connection(
    settings: Settings, scripted: tuple[ScriptedServer, str]
) -> None:
    server, url = scripted
    recipients = [f"reader{n}@example.org" for n in range(5)]
    with SmtpMailer(url).open() as connection:
        for to in recipients:
            connection.send(compose(settings, to=to, rendered=rendered(), unsubscribe_url=UNSUBSCRIBE))
    assert [str(m["To"]) for _, m in server.received] == recipients
    assert len({peer for peer, _ in server.received}) == 1


def test_a_refused_recipient_is_permanent_and_the_connection_goes_on(
    settings: Settings, scripted: tuple[ScriptedServer, str]
) -> None:
    server, url = scripted
    server.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user here"
    with SmtpMailer(url).open() as connection:
        with pytest.raises(DeliveryError) as refused:
            connection.send(
                compose(settings, to="gone@example.org", rendered=rendered(), unsubscribe_url=None)
            )
        connection.send(compose(settings, to="fine@example.org", rendered=rendered(), unsubscribe_url=None))
    assert refused.value.permanent is True
    assert refused.value.bounce is True
    assert refused.value.recipient == "gone@example.org"
    assert "gone@example.org" in str(refused.value) and "550 5.1.1 No such user here" in str(refused.value)
    assert [str(m["To"]) for _, m in server.received] == ["fine@example.org"]


def test_a_temporary_refusal_is_transient(settings: Settings, scripted: tuple[ScriptedServer, str]) -> None:
    server, url = scripted
    server.rcpt_replies["busy@example.org"] = "421 4.3.2 Try again later"
    with SmtpMailer(url).open() as connection, pytest.raises(DeliveryError) as deferred:
        connection.send(compose(settings, to="busy@example.org", rendered=rendered(), unsubscribe_url=None))
    assert deferred.value.permanent is False
    assert deferred.value.bounce is False
    assert deferred.value.connection_lost is True  # 421: the server is closing the session
    assert "busy@example.org" in str(deferred.value) and "421 4.3.2 Try again later" in str(deferred.value)


@pytest.mark.parametrize(
    ("reply", "permanent"), [("554 5.7.1 Message rejected", True), ("451 Local error", False)]
)
def test_a_refused_message_body_follows_the_reply_code(
    settings: Settings, scripted: tuple[ScriptedServer, str], reply: str, permanent: bool
) -> None:
    server, url = scripted
    server.data_reply = reply
    with SmtpMailer(url).open() as connection, pytest.raises(DeliveryError) as refused:
        connection.send(compose(settings, to="r@example.org", rendered=rendered(), unsubscribe_url=None))
    assert refused.value.permanent is permanent
    assert refused.value.bounce is permanent
    assert reply in str(refused.value) and "r@example.org" in str(refused.value)


def test_a_closed_port_is_a_transient_failure() -> None:
    port = free_port()
    with pytest.raises(DeliveryError) as failed, SmtpMailer(f"smtp://127.0.0.1:{port}").open():
        pass
    assert failed.value.permanent is False
    assert f"127.0.0.1:{port}" in str(failed.value)


def test_a_server_that_never_answers_times_out_as_transient() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with (
            pytest.raises(DeliveryError) as failed,
            SmtpMailer(f"smtp://127.0.0.1:{port}", timeout=0.3).open(),
        ):
            pass
    assert failed.value.permanent is False


def test_credentials_in_the_url_are_percent_decoded_and_used(settings: Settings) -> None:
    seen: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        seen.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"p@ss:w/rd", handled=False)

    handler = ScriptedServer()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        mailer = SmtpMailer(f"smtp://user%40example.org:p%40ss%3Aw%2Frd@127.0.0.1:{port}", timeout=5)
        with mailer.open() as connection:
            connection.send(compose(settings, to="r@example.org", rendered=rendered(), unsubscribe_url=None))
        bad = SmtpMailer(f"smtp://user%40example.org:wrong@127.0.0.1:{port}", timeout=5)
        with pytest.raises(DeliveryError) as refused, bad.open():
            pass
    finally:
        controller.stop()
    assert seen[0] == (b"user@example.org", b"p@ss:w/rd")
    assert len(handler.received) == 1
    assert refused.value.permanent is True and "535" in str(refused.value)


def test_smtp_urls() -> None:
    tls = SmtpMailer("smtp+starttls://me:secret@mail.example.org")
    assert (tls.scheme, tls.host, tls.port, tls.username, tls.password) == (
        "smtp+starttls",
        "mail.example.org",
        587,
        "me",
        "secret",
    )
    assert SmtpMailer("smtps://mail.example.org").port == 465
    assert SmtpMailer("smtp://mail.example.org:2525").port == 2525
    assert "secret" not in repr(tls)
    with pytest.raises(ValueError):
        SmtpMailer("http://mail.example.org")


def test_make_mailer_picks_the_outbox_without_an_smtp_url(settings: Settings, smtp_sink: SmtpSink) -> None:
    assert isinstance(make_mailer(settings), OutboxMailer)
    assert isinstance(make_mailer(replace(settings, smtp_url=smtp_sink.url)), SmtpMailer)


def test_the_outbox_holds_one_parseable_eml_file_per_message(settings: Settings, tmp_path: Path) -> None:
    outbox = tmp_path / "not" / "yet" / "there"
    mails = [
        compose(settings, to=to, rendered=rendered("Digest — ünïcode"), unsubscribe_url=UNSUBSCRIBE)
        for to in ("a@example.org", "o'brien+x@example.org")
    ]
    with OutboxMailer(outbox).open() as connection:
        for mail in mails:
            connection.send(mail)

    files = sorted(outbox.iterdir())
    assert len(files) == 2 and all(f.suffix == ".eml" for f in files)
    for path in files:
        assert re.fullmatch(r"\d{8}-\d{6}-[A-Za-z0-9@._+-]+-[0-9a-f]{10}\.eml", path.name), path.name
        data = path.read_bytes()
        assert b"\r\n" in data and re.search(rb"(?<!\r)\n", data) is None
        parsed = message_from_bytes(data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        assert parsed["Subject"] == "Digest — ünïcode"
        assert parsed["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
        assert parts_of(parsed) == [("text/plain", "utf-8"), ("text/html", "utf-8")]
        plain = parsed.get_body(preferencelist=("plain",))
        assert plain is not None and "Über-effiziente" in plain.get_content()
    assert {str(message_from_bytes(f.read_bytes(), policy=policy.default)["To"]) for f in files} == {
        "a@example.org",
        "o'brien+x@example.org",
    }


@pytest.mark.parametrize(
    "to",
    [
        "reader@example.org\r\nBcc: everyone@example.org",
        "reader@example.org\n",
        "not-an-address",
        "",
        "a@b@c.org",
    ],
)
def test_build_message_refuses_a_bad_recipient(settings: Settings, to: str) -> None:
    with pytest.raises(ValueError):
        build_message(settings, to=to, rendered=rendered(), unsubscribe_url=None)


def test_an_international_domain_is_sent_in_its_ascii_form(settings: Settings) -> None:
    message = build_message(settings, to="leser@bücher.example", rendered=rendered(), unsubscribe_url=None)
    assert message["To"] == "leser@xn--bcher-kva.example"


def test_no_unsubscribe_headers_without_a_url(settings: Settings) -> None:
    message = build_message(settings, to="r@example.org", rendered=rendered(), unsubscribe_url=None)
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None


def add_subscriber(services: Services, email: str, status: SubscriberStatus) -> tuple[int, str]:
    with services.sessions() as session:
        subscriber = Subscriber(email=email, topics=["lora", "diffusion models"], status=status)
        session.add(subscriber)
        session.commit()
        return subscriber.id, subscriber.public_id


@pytest.fixture
def sink_services(services: Services, smtp_sink: SmtpSink) -> Services:
    """The `services` fixture's database, with mail going to the SMTP sink through the configured URL."""
    settings = replace(services.settings, smtp_url=smtp_sink.url)
    return Services(settings=settings, engine=services.engine, sessions=services.sessions)


def test_send_confirmation_mails_a_pending_subscriber_their_link(
    sink_services: Services, smtp_sink: SmtpSink
) -> None:
    subscriber_id, public_id = add_subscriber(sink_services, "new@example.org", SubscriberStatus.PENDING)

    message_id = send_confirmation(sink_services, subscriber_id)

    (message,) = smtp_sink.messages
    assert message["To"] == "new@example.org"
    assert message["Message-ID"] == message_id and message_id.endswith("@example.org>")
    assert message["Subject"] == "Confirm your paper digest subscription"
    assert message["List-Unsubscribe"] is None
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    found = re.search(r"https://digest\.example\.org/confirm/(\S+)", text.get_content())
    assert found, text.get_content()
    assert sink_services.links.read_confirm(found.group(1)) == public_id
    html = message.get_body(preferencelist=("html",))
    assert html is not None and found.group(0) in html.get_content()


@pytest.mark.parametrize(
    "status", [SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED]
)
def test_send_confirmation_leaves_a_settled_address_alone(
    sink_services: Services, smtp_sink: SmtpSink, status: SubscriberStatus
) -> None:
    subscriber_id, _ = add_subscriber(sink_services, "done@example.org", status)
    assert send_confirmation(sink_services, subscriber_id) == ""
    assert send_confirmation(sink_services, subscriber_id + 1000) == ""
    assert smtp_sink.messages == []


def test_an_active_subscriber_who_asks_again_gets_their_preferences_link(
    sink_services: Services, smtp_sink: SmtpSink
) -> None:
    subscriber_id, public_id = add_subscriber(sink_services, "again@example.org", SubscriberStatus.ACTIVE)
    with transaction(sink_services.sessions) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        subscriber.confirmation_sent_at = datetime.now(UTC)

    assert send_confirmation(sink_services, subscriber_id)
    (message,) = smtp_sink.messages
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    found = re.search(r"https://digest\.example\.org/preferences/(\S+)", text.get_content())
    assert found and sink_services.links.read_preferences(found.group(1)) == public_id
    assert "/confirm/" not in text.get_content()

    # A replay of the task long after the request mails nothing.
    with transaction(sink_services.sessions) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        subscriber.confirmation_sent_at = datetime.now(UTC) - timedelta(hours=2)
    assert send_confirmation(sink_services, subscriber_id) == ""
    assert len(smtp_sink.messages) == 1
