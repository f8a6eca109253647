"""The SMTP client pipelines MAIL, RCPT and DATA when the server offers PIPELINING (RFC 2920).

The server here is scripted on a raw socket and answers nothing until all three commands have arrived,
so a client that waited for each reply in turn would stall and fail the test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from digest.mail.compose import OutgoingMail, compose
from digest.mail.render import RenderedEmail
from digest.mail.transport import DeliveryError, SmtpMailer
from tests.support.env import make_settings


class ScriptedServer:
    """Offers PIPELINING, then for each transaction reads until DATA before replying to any command."""

    def __init__(self, envelope_replies: list[tuple[bytes, bytes, bytes]]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.envelope_replies = envelope_replies
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        connection.settimeout(10)
        buffer = b""

        def read_until(marker: bytes) -> bytes:
            nonlocal buffer
            while marker not in buffer:
                chunk = connection.recv(65536)
                if not chunk:
                    raise ConnectionError("client went away")
                buffer += chunk
            head, _, buffer = buffer.partition(marker)
            return head + marker

        with connection:
            connection.sendall(b"220 scripted ESMTP\r\n")
            read_until(b"\r\n")  # EHLO
            connection.sendall(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            for mail_reply, rcpt_reply, data_reply in self.envelope_replies:
                envelope = read_until(b"DATA\r\n")
                self.received.append(envelope)
                connection.sendall(mail_reply + b"\r\n" + rcpt_reply + b"\r\n" + data_reply + b"\r\n")
                if data_reply.startswith(b"354"):
                    self.received.append(read_until(b"\r\n.\r\n"))
                    connection.sendall(b"250 2.0.0 queued\r\n")
                else:
                    read_until(b"\r\n")  # RSET
                    connection.sendall(b"250 2.0.0 reset\r\n")
            read_until(b"\r\n")  # QUIT
            connection.sendall(b"221 bye\r\n")


@pytest.fixture
def message_for(tmp_path: Path) -> Callable[[str], OutgoingMail]:
    settings = make_settings(tmp_path)
    rendered = RenderedEmail(subject="Your papers", text="1. A paper\n", html="<p>1. A paper</p>")

    def build(to: str) -> OutgoingMail:
        return compose(settings, to=to, rendered=rendered, unsubscribe_url=None)

    return build


def test_the_envelope_goes_out_in_one_write_when_the_server_offers_pipelining(
    message_for: Callable[[str], OutgoingMail],
) -> None:
    ok = (b"250 2.1.0 ok", b"250 2.1.5 ok", b"354 go ahead")
    server = ScriptedServer([ok, ok])
    mailer = SmtpMailer(f"smtp://127.0.0.1:{server.port}", timeout=5)
    with mailer.open() as connection:
        connection.send(message_for("first@example.org"))
        connection.send(message_for("second@example.org"))
    server.thread.join(5)
    envelopes = server.received[0::2]
    assert [e.count(b"\r\n") for e in envelopes] == [3, 3]
    assert envelopes[1].startswith(b"MAIL FROM:<digest@example.org>\r\nRCPT TO:<second@example.org>\r\n")
    assert b"1. A paper" in server.received[1]


def test_a_recipient_refused_in_a_pipelined_envelope_is_a_bounce(
    message_for: Callable[[str], OutgoingMail],
) -> None:
    refused = (b"250 2.1.0 ok", b"550 5.1.1 no such user", b"554 5.5.1 no valid recipients")
    server = ScriptedServer([refused])
    mailer = SmtpMailer(f"smtp://127.0.0.1:{server.port}", timeout=5)
    with mailer.open() as connection, pytest.raises(DeliveryError) as caught:
        connection.send(message_for("nobody@example.org"))
    server.thread.join(5)
    assert caught.value.bounce and caught.value.permanent
    assert "refused the recipient nobody@example.org: 550 5.1.1 no such user" in str(caught.value)
