"""Composing one message: the headers a bulk sender needs (List-Unsubscribe, Message-ID, DKIM) and the
multipart/alternative body, written as bytes directly; the transport only carries them."""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.charset import QP, Charset
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING

from digest.config import Settings
from digest.mail.render import RenderedEmail

if TYPE_CHECKING:
    from digest.mail.dkim import DkimSigner

# Headers are folded only at whitespace up to RFC 5322's 998-character limit: with the default 78, Python
# turns a long unbreakable header such as List-Unsubscribe's URL into an encoded word no client reads.
# Bodies are already encoded (quoted-printable, short lines) when the message is built.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class OutgoingMail:
    """A message as it goes on the wire: envelope plus the exact (possibly signed) bytes."""

    sender: str
    recipient: str
    message_id: str
    data: bytes


# Gmail clips a message whose HTML is larger than about 102 KB, hiding the unsubscribe link at the bottom.
HTML_LIMIT_BYTES = 100_000


def _checked_recipient(to: str) -> str:
    if "\r" in to or "\n" in to:
        raise ValueError(f"recipient contains a line break: {to!r}")
    candidate = to.strip()
    if not re.fullmatch(r"[^@\s<>,;\"()\[\]\\]+@[^@\s<>,;\"()\[\]\\]+\.[^@\s<>,;\"()\[\]\\]+", candidate):
        raise ValueError(f"not an email address: {to!r}")
    local, _, domain = candidate.rpartition("@")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"not an email address: {to!r} (bad domain)") from None
        candidate = f"{local}@{domain}"
    try:
        # Rejects a non-ASCII local part too: that needs SMTPUTF8, which this sender does not use.
        address = Address(addr_spec=candidate)
    except (ValueError, HeaderParseError) as exc:
        raise ValueError(f"not an email address: {to!r} ({exc})") from None
    if not address.username or not address.domain:
        raise ValueError(f"not an email address: {to!r}")
    return candidate


def _checked_return_path(address: str) -> str:
    """Only what would break the MAIL FROM command; `localhost`, the default domain, must pass."""
    local, at, domain = address.rpartition("@")
    if not (at and local and domain and address.isascii()) or any(c in address for c in " <>\r\n\t,;"):
        raise ValueError(f"not an envelope sender: {address!r}")
    return address


def compose(
    settings: Settings,
    *,
    to: str,
    rendered: RenderedEmail,
    unsubscribe_url: str | None,
    signer: DkimSigner | None = None,
    message_id: str | None = None,
    return_path: str | None = None,
) -> OutgoingMail:
    """One email with a plain-text part first and HTML second, so clients prefer the HTML when they can.

    The MIME is written directly rather than through `email.message`, whose header objects and generator
    cost several milliseconds per message: at a hundred thousand digests a day that was most of the
    sending time. `build_message` parses the result back for anyone who wants the object.

    `message_id` is given when this message may already have been sent once: a copy sent again with the
    same Message-ID is one message to the mailbox providers that collapse duplicates.

    The List-Unsubscribe headers let mail providers offer a one-click unsubscribe, which they expect
    from bulk senders; leaving them out makes a digest more likely to be filed as spam.

    `return_path` is the envelope sender (MAIL FROM), where servers mail a bounce that comes later; a
    digest's names that digest (`digest.bounces.verp`). The From: header stays `mail_from` either way:
    it is what the reader sees and replies to.
    """
    recipient = _checked_recipient(to)
    message_id = message_id or new_message_id(settings)
    sender = parseaddr(settings.mail_from)[1]
    envelope_sender = sender if return_path is None else _checked_return_path(return_path)
    headers = [
        ("From", from_header(settings.mail_from, settings.organisation)),
        ("To", recipient),
        ("Subject", _unstructured("Subject", rendered.subject)),
        ("Date", format_datetime(datetime.now(UTC))),
        ("Message-ID", message_id),
        # RFC 3834: tells vacation responders and other robots not to answer.
        ("Auto-Submitted", "auto-generated"),
    ]
    if unsubscribe_url is not None:
        if any(c in unsubscribe_url for c in "\r\n<> ") or not unsubscribe_url.isascii():
            raise ValueError(f"unsubscribe URL cannot go in a header: {unsubscribe_url!r}")
        headers += [
            ("List-Id", _unstructured("List-Id", settings.list_id_header)),
            ("List-Unsubscribe", f"<{unsubscribe_url}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    boundary = f"=_digest_{secrets.token_hex(12)}"
    headers += [("MIME-Version", "1.0"), ("Content-Type", f'multipart/alternative; boundary="{boundary}"')]
    lines = [f"{field}: {value}" for field, value in headers]
    if any(len(line) > 998 for line in lines):
        raise ValueError(f"a header is longer than SMTP allows: {max(lines, key=len)[:80]!r}...")
    head = "\r\n".join(lines).encode("ascii")
    data = b"".join(
        [
            head,
            b"\r\n\r\n",
            _part(boundary, "plain", rendered.text),
            _part(boundary, "html", rendered.html),
            f"--{boundary}--\r\n".encode("ascii"),
        ]
    )
    if signer is not None:
        data = signer.sign(data)
    return OutgoingMail(envelope_sender, recipient, message_id, data)


@lru_cache(maxsize=16)
def from_header(mail_from: str, organisation: str = "") -> str:
    """The From value as it goes on the wire: the sender's name, then the organisation running the service
    ("Paper digest · Example Lab <digest@example.org>"), so a reader can tell whose digest this is.

    An ASCII name is quoted where it has specials (a comma would otherwise start a second address). A
    name with anything else is sent as RFC 2047 encoded words of at most 75 characters, broken only
    after a space that stays inside the word, so readers that follow the RFC (and join adjacent words)
    and readers that do not both show the name as written. Cached: it is the same for every message.
    """
    name, sender = parseaddr(mail_from)
    display = " · ".join(part for part in (name.strip(), organisation.strip()) if part)
    if any(c in display for c in "\r\n"):
        raise ValueError(f"the sender's name contains a line break: {display!r}")
    if display.isascii():
        return formataddr((display, sender))
    return f"{_encoded_words(display)} <{sender}>"


_UTF8 = Charset("utf-8")
_UTF8.header_encoding = QP
# RFC 2047 allows 75; 72 also keeps the first line, "From: " and a word, within the usual 78.
_ENCODED_WORD_MAX = 72


def _encoded_words(text: str) -> str:
    def encoded(chunk: str) -> str:
        return str(_UTF8.header_encode(chunk))

    pieces: list[str] = []
    for word in text.split(" "):
        # A word too long for one encoded word on its own is cut between characters.
        while len(encoded(word + " ")) > _ENCODED_WORD_MAX:
            cut = len(word) - 1
            while len(encoded(word[:cut])) > _ENCODED_WORD_MAX:
                cut -= 1
            pieces.append(word[:cut])
            word = word[cut:]
        pieces.append(word + " ")
    pieces[-1] = pieces[-1].removesuffix(" ")
    words: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(encoded(current + piece)) > _ENCODED_WORD_MAX:
            words.append(encoded(current))
            current = piece
        else:
            current += piece
    words.append(encoded(current))
    return "\r\n ".join(words)


def new_message_id(settings: Settings) -> str:
    return make_msgid(domain=settings.mail_domain)


def _unstructured(field: str, value: str) -> str:
    """A header value as it goes on the wire: ASCII as is, anything else as RFC 2047 encoded words."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"{field} contains a line break: {value!r}")
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=field).encode(linesep="\r\n ", maxlinelen=998)


def _part(boundary: str, subtype: str, content: str) -> bytes:
    # Quoted-printable keeps every line under the SMTP limit and needs no 8BITMIME from the server.
    body = binascii.b2a_qp(content.replace("\r\n", "\n").encode("utf-8"), istext=True)
    # The CRLF before the next boundary belongs to the boundary, not to the content.
    body = body.replace(b"\n", b"\r\n") + b"\r\n"
    return (
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii") + body


def build_message(
    settings: Settings, *, to: str, rendered: RenderedEmail, unsubscribe_url: str | None
) -> EmailMessage:
    """The composed message as an `EmailMessage`, for code and tests that want to read it."""
    mail = compose(settings, to=to, rendered=rendered, unsubscribe_url=unsubscribe_url)
    message = message_from_bytes(mail.data, policy=WIRE_POLICY)
    assert isinstance(message, EmailMessage)
    return message
