"""Hand composed messages (`digest.mail.compose`) to a mail server, or to the outbox folder if none.

A mailer opens one connection for a batch, because a TLS handshake and login per email would dominate
the sending time. Failures come back as `DeliveryError` with `permanent` saying whether trying the same
message again later can help, which is what the caller needs to decide between retrying and giving up.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from digest.config import Settings
from digest.mail.compose import OutgoingMail

if TYPE_CHECKING:
    pass

SMTP_TIMEOUT_SECONDS = 30.0
_DEFAULT_PORTS = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}


class DeliveryError(Exception):
    """A message was not accepted. `permanent` is True when sending it again cannot succeed.

    `bounce` marks a permanent refusal of this recipient or this message (not of our session), which is
    what suppresses an address; `connection_lost` tells the sender to open a new connection before the
    next message.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        recipient: str | None = None,
        connection_lost: bool = False,
        bounce: bool = False,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.recipient = recipient
        self.connection_lost = connection_lost
        self.bounce = bounce


class MailConnection(Protocol):
    def send(self, mail: OutgoingMail, handing_over: Callable[[], None] | None = None) -> None:
        """Deliver one message or raise DeliveryError.

        `handing_over` is called at the last moment the message certainly has not left (before the final
        "." of SMTP DATA), so a caller can record that anything after it may have been delivered.
        """
        ...


class Mailer(Protocol):
    def open(self) -> AbstractContextManager[MailConnection]:
        """One connection, to be used for a whole batch of messages."""
        ...


def _recipient_of(message: EmailMessage) -> str:
    return parseaddr(str(message["To"] or ""))[1]


# Outbox ---------------------------------------------------------------------------------------------


class OutboxMailer:
    """Writes each message as an .eml file, for running without a mail server and for looking at mail.

    Files appear atomically, so a reader never sees half a message.
    """

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = outbox_dir

    @contextmanager
    def open(self) -> Iterator[MailConnection]:
        try:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(
                f"cannot create the outbox {self.outbox_dir}: {exc}", permanent=False
            ) from exc
        yield _OutboxConnection(self.outbox_dir)


class _OutboxConnection:
    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = outbox_dir

    def send(self, mail: OutgoingMail, handing_over: Callable[[], None] | None = None) -> None:
        recipient = mail.recipient
        data = mail.data
        digest = hashlib.sha256(mail.message_id.encode() or data).hexdigest()[:10]
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        safe_recipient = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipient)[:100] or "unknown"
        final = self.outbox_dir / f"{stamp}-{safe_recipient}-{digest}.eml"
        temporary = self.outbox_dir / f".{final.stem}.{secrets.token_hex(4)}.tmp"
        try:
            with open(temporary, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if handing_over is not None:
                handing_over()
            os.replace(temporary, final)
            _fsync_dir(self.outbox_dir)
        except OSError as exc:
            with suppress(OSError):
                temporary.unlink()
            raise DeliveryError(
                f"could not write the message to {recipient} into {self.outbox_dir}: {exc}",
                permanent=False,
                recipient=recipient,
            ) from exc


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself survive a crash; not every platform can open a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# SMTP -----------------------------------------------------------------------------------------------


class SmtpMailer:
    """Sends through an SMTP server named by a URL such as smtp+starttls://user:password@host:587."""

    def __init__(self, url: str, *, timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS:
            raise ValueError(f"SMTP URL must start with smtp://, smtps:// or smtp+starttls://; got {url!r}")
        if not parts.hostname:
            raise ValueError(f"SMTP URL has no host: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SmtpMailer({self.scheme}://{self.host}:{self.port})"

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.scheme == "smtps":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.scheme == "smtp+starttls":
                client.ehlo()
                client.starttls(context=context)
                client.ehlo()
            if self.username is not None:
                client.login(self.username, self.password or "")
            if client.sock is not None:
                # The final "." goes out as its own small write after the hand-over is recorded; with
                # Nagle's algorithm it would wait for the server's delayed ACK, about 40 ms per message.
                client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            client.close()
            raise
        return client

    @contextmanager
    def open(self) -> Iterator[MailConnection]:
        try:
            client = self._connect()
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"mail server {self.host}:{self.port} refused the session: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
                permanent=exc.smtp_code >= 500,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"could not connect to mail server {self.host}:{self.port}: {exc or type(exc).__name__}",
                permanent=False,
            ) from exc
        try:
            yield _SmtpConnection(client, f"{self.host}:{self.port}")
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class _SmtpConnection:
    """One SMTP session; each message is its own MAIL/RCPT/DATA transaction, as smtplib would do it, but
    with the final "." sent separately so the caller can record the moment the message may have left."""

    def __init__(self, client: smtplib.SMTP, server: str) -> None:
        self.client = client
        self.server = server

    def send(self, mail: OutgoingMail, handing_over: Callable[[], None] | None = None) -> None:
        recipient = mail.recipient
        try:
            self._transaction(mail, handing_over)
        except DeliveryError:
            raise
        except smtplib.SMTPServerDisconnected as exc:
            raise self._lost(recipient, exc) from exc
        except smtplib.SMTPException as exc:
            raise DeliveryError(
                f"{self.server} cannot take the message to {recipient}: {exc}",
                permanent=True,
                recipient=recipient,
            ) from exc
        except OSError as exc:  # after the SMTP ones, which are OSErrors too
            raise self._lost(recipient, exc) from exc

    def _transaction(self, mail: OutgoingMail, handing_over: Callable[[], None] | None) -> None:
        client = self.client
        recipient = mail.recipient
        client.ehlo_or_helo_if_needed()
        if client.has_extn("pipelining"):
            self._envelope_pipelined(mail)
        else:
            self._envelope_in_turn(mail)
        body = _DOT_AT_LINE_START.sub(b"..", mail.data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        client.send(body)
        if handing_over is not None:
            handing_over()
        client.send(b".\r\n")
        code, reply = client.getreply()
        if code != 250:
            raise self._refused(recipient, code, reply, "refused the message to")

    def _envelope_in_turn(self, mail: OutgoingMail) -> None:
        client, recipient = self.client, mail.recipient
        code, reply = client.mail(mail.sender)
        if code != 250:
            self._reset()
            raise self._refused(recipient, code, reply, "refused the sender for", bounce=False)
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            self._reset()
            raise self._refused(recipient, code, reply, "refused the recipient")
        code, reply = client.docmd("DATA")
        if code != 354:
            self._reset()
            raise self._refused(recipient, code, reply, "refused the data for")

    def _envelope_pipelined(self, mail: OutgoingMail) -> None:
        """MAIL, RCPT and DATA in one write and their three replies read after (RFC 2920): one round trip
        instead of three for every email."""
        client, recipient = self.client, mail.recipient
        client.send(
            f"MAIL FROM:{smtplib.quoteaddr(mail.sender)}\r\n"
            f"RCPT TO:{smtplib.quoteaddr(recipient)}\r\nDATA\r\n"
        )
        mail_reply, rcpt_reply, data_reply = client.getreply(), client.getreply(), client.getreply()
        refusal = None
        if mail_reply[0] != 250:
            refusal = self._refused(recipient, *mail_reply, "refused the sender for", bounce=False)
        elif rcpt_reply[0] not in (250, 251):
            refusal = self._refused(recipient, *rcpt_reply, "refused the recipient")
        elif data_reply[0] != 354:
            refusal = self._refused(recipient, *data_reply, "refused the data for")
        if refusal is None:
            return
        if data_reply[0] == 354:
            # A server that invites the data after refusing the envelope gets an empty message to close
            # the transaction; it has no recipient, so nothing is delivered.
            client.send(b".\r\n")
            client.getreply()
        if not refusal.connection_lost:
            self._reset()
        raise refusal

    def _reset(self) -> None:
        with suppress(smtplib.SMTPException, OSError):
            self.client.rset()

    def _lost(self, recipient: str, exc: OSError) -> DeliveryError:
        return DeliveryError(
            f"lost the connection to {self.server} while sending to {recipient}: {exc or type(exc).__name__}",
            permanent=False,
            recipient=recipient,
            connection_lost=True,
        )

    def _refused(
        self, recipient: str, code: int, reply: bytes | str, what: str, *, bounce: bool = True
    ) -> DeliveryError:
        # 421 means the server is closing the session, whatever stage it answered at.
        return DeliveryError(
            f"{self.server} {what} {recipient}: {code} {_text(reply)}",
            permanent=code >= 500,
            recipient=recipient,
            connection_lost=code == 421 or code < 200,
            bounce=bounce and code >= 500,
        )


_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")


def make_mailer(settings: Settings) -> Mailer:
    if settings.smtp_url:
        return SmtpMailer(settings.smtp_url)
    return OutboxMailer(settings.outbox_dir)
