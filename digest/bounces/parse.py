"""What one message in the bounce mailbox says, from its raw bytes.

The mailbox gets delivery status notifications (RFC 3464 `multipart/report; report-type=delivery-status`,
what Postfix, Exim and the big providers send), complaint reports (RFC 5965 ARF,
`report-type=feedback-report`) and whatever else is mailed to a return path: vacation replies, replies
from people, spam. Nothing here touches the database: a `Report` says what kind of message it is, about
which recipient and why, and which addresses and Message-ID might tie it to a digest; the processor
decides what that means. Reports from the wild are often odd, so every field is read leniently, and
nothing raises: bytes that cannot be read at all are a MALFORMED report saying why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email import message_from_bytes
from email.header import Header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value, getaddresses, parseaddr
from enum import StrEnum

# What a reason quotes from a report at most, so it fits Subscriber.bounce_reason with room to spare.
MAX_DIAGNOSTIC = 300

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ARF_TYPES = ("message/feedback-report",)
_ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers")
# RFC 5965's types that mean "the recipient does not want this"; not-spam and auth-failure (RFC 6591,
# about SPF and DKIM results) are not complaints.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})
# Starts the reason a complaint records, so a second copy of it is recognised.
COMPLAINT_MARK = "complaint:"
# Where a delivered report names the address it was delivered to, the most telling first.
_DELIVERY_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC = re.compile(r"\b([245])\d\d\b")


class BounceKind(StrEnum):
    # The receiving side refused the address for good (Action: failed, Status 5.x.x).
    HARD = "hard"
    # A server gave up after temporary failures (Action: failed, Status 4.x.x).
    SOFT = "soft"
    # Still being retried (Action: delayed): a report only.
    DELAYED = "delayed"
    # The recipient (through their provider) reported a digest as spam.
    COMPLAINT = "complaint"
    # Ordinary mail, an automatic reply, a report about something else.
    UNRELATED = "unrelated"
    # Looks like a report, but its parts are broken or missing.
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Report:
    kind: BounceKind
    # Why the message was read so, in words for the operator.
    explanation: str
    recipient: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    feedback_type: str | None = None
    # Addresses the report was delivered to or names as the original envelope sender, most telling first;
    # any of them may be a digest's VERP return path.
    return_paths: tuple[str, ...] = ()
    # The Message-ID of the returned original, when the report quotes it.
    original_message_id: str | None = None

    @property
    def reason(self) -> str:
        """What the digest row and the subscriber record as the cause, from what the report says."""
        detail = self.diagnostic or "no diagnostic given"
        if self.kind is BounceKind.HARD:
            return f"bounced after delivery (report, status {self.status}): {detail}"
        if self.kind is BounceKind.SOFT:
            return f"a mail server gave up after temporary failures (report, status {self.status}): {detail}"
        if self.kind is BounceKind.COMPLAINT:
            return f"{COMPLAINT_MARK} the recipient's mail provider reported a digest as {self.feedback_type}"
        return self.explanation


def parse_report(data: bytes) -> Report:
    """Classify one message; never raises."""
    try:
        return _parse(data)
    except Exception as exc:  # a report from the wild may break the email package in ways nobody listed
        explanation = f"could not be read as an email message ({type(exc).__name__}: {exc})"
        return Report(BounceKind.MALFORMED, explanation)


def _parse(data: bytes) -> Report:
    if not data.strip():
        return Report(BounceKind.MALFORMED, "an empty message")
    # compat32 keeps header values as the text they are; the newer policy parses them on access, which
    # raises on some of the broken headers reports carry.
    message = message_from_bytes(data, policy=compat32)
    if not message.keys():
        return Report(BounceKind.MALFORMED, "no header fields: not an email message")
    delivered_to = tuple(_addresses(message, _DELIVERY_HEADERS))
    parts = list(_parts(message))
    dsn = _first(parts, _DSN_TYPES)
    arf = _first(parts, _ARF_TYPES)
    original = _original_headers(parts)
    if dsn is not None:
        return _delivery_status(dsn, delivered_to, original)
    if arf is not None:
        return _feedback(arf, delivered_to, original)
    if message.get_content_type() == "multipart/report":
        return _incomplete_report(message, delivered_to, original)
    return Report(BounceKind.UNRELATED, _what_it_is(message), return_paths=delivered_to)


def _incomplete_report(message: Message, delivered_to: tuple[str, ...], original: Message | None) -> Report:
    """A multipart/report with neither a delivery-status nor a feedback-report part."""
    base = Report(
        BounceKind.MALFORMED, "", return_paths=delivered_to, original_message_id=_message_id(original)
    )
    if not message.is_multipart():
        return replace(
            base, explanation="a multipart/report whose parts cannot be found (no or a wrong boundary)"
        )
    param = message.get_param("report-type")
    report_type = collapse_rfc2231_value(param).lower() if param else ""
    if report_type in ("delivery-status", "feedback-report"):
        return replace(base, explanation=f"a {report_type} report without its message/{report_type} part")
    return replace(
        base,
        kind=BounceKind.UNRELATED,
        explanation=f"a report of another kind ({report_type or 'no report-type'}), not about delivery",
    )


def _delivery_status(part: Message, delivered_to: tuple[str, ...], original: Message | None) -> Report:
    blocks = _field_blocks(part)
    recipients = [b for b in blocks if "action" in b or "final-recipient" in b]
    per_message = blocks[0] if blocks and blocks[0] not in recipients else {}
    # Postfix names the original envelope sender, which is our return path, in the report itself.
    named = [per_message.get(f) for f in ("x-postfix-sender", "original-envelope-id")]
    if original is not None:
        named += _addresses(original, ("Return-Path",))
    base = Report(
        BounceKind.MALFORMED,
        "the delivery-status part names no recipient (no Action or Final-Recipient field)",
        return_paths=_distinct(delivered_to, named),
        # Gmail names the original's Message-ID in the report as well as (or instead of) quoting it.
        original_message_id=_message_id(original) or _angle_id(per_message.get("x-original-message-id")),
    )
    if not recipients:
        return base
    fields = min(recipients, key=_severity)
    status = _status(fields)
    recipient = _address_field(fields.get("final-recipient") or fields.get("original-recipient"))
    base = replace(base, recipient=recipient, status=status, diagnostic=_clip(fields.get("diagnostic-code")))
    action = _first_word(fields.get("action"))
    if action == "failed":
        if status is None or status[0] == "2":
            return replace(base, explanation="Action: failed without a failure status code")
        return replace(
            base,
            kind=BounceKind.HARD if status[0] == "5" else BounceKind.SOFT,
            explanation=f"delivery to {recipient or 'the recipient'} failed ({status})",
        )
    if action == "delayed":
        return replace(
            base, kind=BounceKind.DELAYED, explanation="delivery is delayed and still being retried"
        )
    if action in ("delivered", "relayed", "expanded"):
        return replace(
            base, kind=BounceKind.UNRELATED, explanation=f"a report of successful delivery ({action})"
        )
    return replace(base, explanation=f"an Action the standard does not define: {action or 'none'}")


def _feedback(part: Message, delivered_to: tuple[str, ...], original: Message | None) -> Report:
    fields: dict[str, str] = {}
    for block in _field_blocks(part):
        fields = {**block, **fields}
    named = [fields.get("original-mail-from")]
    if original is not None:
        named += _addresses(original, ("Return-Path",))
    recipient = _address_field(fields.get("original-rcpt-to"))
    if recipient is None and original is not None:
        recipient = next(iter(_addresses(original, ("To",))), None)
    feedback_type = _first_word(fields.get("feedback-type"))
    base = Report(
        BounceKind.MALFORMED,
        "a feedback report without a Feedback-Type",
        recipient=recipient,
        feedback_type=feedback_type or None,
        return_paths=_distinct(delivered_to, named),
        original_message_id=_message_id(original),
    )
    if not feedback_type:
        return base
    if feedback_type in COMPLAINT_TYPES:
        agent = fields.get("user-agent")
        explanation = f"a complaint (Feedback-Type {feedback_type})" + (f" sent by {agent}" if agent else "")
        return replace(base, kind=BounceKind.COMPLAINT, explanation=explanation)
    return replace(
        base, kind=BounceKind.UNRELATED, explanation=f"a {feedback_type} feedback report, not a complaint"
    )


def _first_word(value: str | None) -> str:
    words = (value or "").split()
    return words[0].lower().rstrip(";") if words else ""


def _severity(fields: dict[str, str]) -> int:
    """Which recipient block a report is about when it has several: the worst outcome first."""
    action = (fields.get("action") or "").lower()
    status = _status(fields) or ""
    if action.startswith("failed"):
        return 0 if status.startswith("5") else 1 if status.startswith("4") else 2
    return 3 if action.startswith("delayed") else 4


def _status(fields: dict[str, str]) -> str | None:
    match = _ENHANCED.search(fields.get("status") or "")
    if match is None:
        # Some servers leave Status out or write nonsense there; the SMTP reply they quote still says it.
        diagnostic = fields.get("diagnostic-code") or ""
        match = _ENHANCED.search(diagnostic)
        if match is None:
            basic = _BASIC.search(diagnostic)
            return f"{basic.group(1)}.0.0" if basic else None
    return ".".join(match.groups())


def _what_it_is(message: Message) -> str:
    auto = _header(message, "Auto-Submitted").lower()
    subject = _header(message, "Subject")
    if (
        auto.startswith("auto-replied")
        or _header(message, "X-Autoreply")
        or re.match(r"(?i)(auto(matic)?[ -]?reply|out of (the )?office|abwesenheit)", subject)
    ):
        return "an automatic reply, not a delivery report"
    sender = parseaddr(_header(message, "From"))[1].lower()
    if _header(message, "X-Failed-Recipients") or sender.partition("@")[0] in ("mailer-daemon", "postmaster"):
        return "looks like a bounce, but not in the standard report format (RFC 3464): left for a human"
    return "ordinary mail, not a delivery report"


def _parts(message: Message) -> Iterator[Message]:
    """The report's own parts, not those inside a returned message."""
    yield message
    if message.get_content_maintype() == "multipart" and message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, Message):
                yield from _parts(part)


def _first(parts: list[Message], types: tuple[str, ...]) -> Message | None:
    return next((p for p in parts if p.get_content_type() in types), None)


def _original_headers(parts: list[Message]) -> Message | None:
    part = _first(parts, _ORIGINAL_TYPES)
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list):
        inner = payload[0] if payload else None
        return inner if isinstance(inner, Message) else None
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    return HeaderParser(policy=compat32).parsestr(text.lstrip())


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """The groups of fields of a message/delivery-status or message/feedback-report part.

    The email package parses message/delivery-status into one Message per group, but any other message/*
    type (message/global-delivery-status, message/feedback-report) into a single Message with the first
    group as its headers and the rest as its body, so the body is read as groups too.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = []
        for item in payload:
            if isinstance(item, Message):
                blocks.append(_fields(item))
                body = item.get_payload()
                if isinstance(body, str):
                    blocks += _blocks_from_text(body)
        return [b for b in blocks if b]
    raw = part.get_payload(decode=True)
    return _blocks_from_text(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload))


def _blocks_from_text(text: str) -> list[dict[str, str]]:
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    parser = HeaderParser(policy=compat32)
    return [b for b in (_fields(parser.parsestr(chunk.strip() + "\n")) for chunk in chunks) if b]


def _fields(message: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name in message:
        fields.setdefault(name.lower(), _header(message, name))
    return fields


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    if isinstance(value, Header):
        value = str(value)
    return " ".join(str(value).split())


def _addresses(message: Message, names: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for name in names:
        values = [" ".join(str(v).split()) for v in message.get_all(name) or []]
        found += [addr for _, addr in getaddresses(values) if "@" in addr and addr not in found]
    return found


def _address_field(value: str | None) -> str | None:
    """An address from a field such as `Final-Recipient: rfc822; a@b`, whose type prefix is optional."""
    if not value:
        return None
    text = value.split(";", 1)[1] if ";" in value else value
    address = parseaddr(text.strip())[1] or text.strip()
    return address if "@" in address else None


def _distinct(first: tuple[str, ...], more: list[str | None]) -> tuple[str, ...]:
    found = list(first)
    for value in more:
        address = _address_field(value)
        if address is not None and address not in found:
            found.append(address)
    return tuple(found)


def _message_id(message: Message | None) -> str | None:
    return None if message is None else _angle_id(_header(message, "Message-ID"))


def _angle_id(value: str | None) -> str | None:
    match = re.search(r"<[^<>\s]+>", value or "")
    return match.group(0) if match else (value or None)


def _clip(value: str | None) -> str | None:
    if not value:
        return None
    return value if len(value) <= MAX_DIAGNOSTIC else value[: MAX_DIAGNOSTIC - 1] + "…"
