"""Reports as they land in a bounce mailbox, written for these tests in the shapes real servers produce.

Each function returns the bytes of one message as the local delivery agent stored it (Postfix's local(8)
and Dovecot add Return-Path and Delivered-To; Exim adds Envelope-to). `verp` is the address the report
was delivered to, `original_id` the Message-ID of the digest it returns.
"""

from __future__ import annotations

from typing import Protocol


class Sample(Protocol):
    __name__: str

    def __call__(self, verp: str, recipient: str, original_id: str) -> bytes: ...


ORIGINAL_HEADERS = """\
Received: from digest.example.org (digest.example.org [192.0.2.10])
\tby relay.example.org (Postfix) with ESMTP id 4QwXyZ1aBc
\tfor <{recipient}>; Mon, 23 Nov 2026 06:00:03 +0000 (UTC)
From: Paper digest <digest@example.org>
To: {recipient}
Subject: Your paper digest: 3 new papers
Date: Mon, 23 Nov 2026 06:00:02 +0000
Message-ID: {original_id}
Auto-Submitted: auto-generated
List-Id: Paper digest <digest.example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_digest_0a1b2c3d"
"""

ORIGINAL_BODY = """\

--=_digest_0a1b2c3d
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

1. Sparse low-rank adapters for fine-tuning
--=_digest_0a1b2c3d--
"""


def postfix_hard(verp: str, recipient: str, original_id: str, *, local_unknown: bool = False) -> bytes:
    """Postfix's bounce after the next hop refused the recipient, or after local(8) found no such user."""
    if local_unknown:
        said = f'<{recipient}>: unknown user: "{recipient.partition("@")[0]}"'
        diagnostic = f'X-Postfix; unknown user: "{recipient.partition("@")[0]}"'
        remote = ""
    else:
        said = (
            f"<{recipient}>: host mx.example.net[198.51.100.7] said: 550 5.1.1\n"
            f"    <{recipient}>: Recipient address rejected: User unknown in virtual mailbox\n"
            "    table (in reply to RCPT TO command)"
        )
        diagnostic = (
            f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User\n"
            "    unknown in virtual mailbox table"
        )
        remote = "Remote-MTA: dns; mx.example.net\n"
    return f"""\
Return-Path: <>
X-Original-To: {verp}
Delivered-To: {verp}
Received: by relay.example.org (Postfix)
\tid 4QwY0b2CdE; Mon, 23 Nov 2026 06:00:05 +0000 (UTC)
Date: Mon, 23 Nov 2026 06:00:05 +0000 (UTC)
From: MAILER-DAEMON@relay.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4QwY0b2CdE.1795413605/relay.example.org"
Content-Transfer-Encoding: 8bit
Message-Id: <20261123060005.4QwY0b2CdE@relay.example.org>

This is a MIME-encapsulated message.

--4QwY0b2CdE.1795413605/relay.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.org.

Your message could not be delivered to one or more recipients. It is
attached below.

                   The mail system

{said}

--4QwY0b2CdE.1795413605/relay.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.org
X-Postfix-Queue-ID: 4QwXyZ1aBc
X-Postfix-Sender: rfc822; {verp}
Arrival-Date: Mon, 23 Nov 2026 06:00:03 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
{remote}Diagnostic-Code: {diagnostic}

--4QwY0b2CdE.1795413605/relay.example.org
Content-Description: Undelivered Message
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

{ORIGINAL_HEADERS.format(recipient=recipient, original_id=original_id)}{ORIGINAL_BODY}
--4QwY0b2CdE.1795413605/relay.example.org--
""".encode()


def postfix_gave_up(verp: str, recipient: str, original_id: str) -> bytes:
    """Postfix after maximal_queue_lifetime: the next hop kept timing out, so the status stays 4.x.x."""
    return f"""\
Return-Path: <>
X-Original-To: {verp}
Delivered-To: {verp}
Date: Sat, 28 Nov 2026 06:10:41 +0000 (UTC)
From: MAILER-DAEMON@relay.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4QzT7c9KmN.1795846241/relay.example.org"
Message-Id: <20261128061041.4QzT7c9KmN@relay.example.org>

--4QzT7c9KmN.1795846241/relay.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.org.

Your message could not be delivered for 5 days; it will not be retried.

<{recipient}>: connect to mx.slow.example.net[203.0.113.9]:25: Connection
    timed out

--4QzT7c9KmN.1795846241/relay.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.org
X-Postfix-Queue-ID: 4QzT7c9KmN
X-Postfix-Sender: rfc822; {verp}
Arrival-Date: Mon, 23 Nov 2026 06:00:03 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.slow.example.net[203.0.113.9]:25:
    Connection timed out

--4QzT7c9KmN.1795846241/relay.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{ORIGINAL_HEADERS.format(recipient=recipient, original_id=original_id)}
--4QzT7c9KmN.1795846241/relay.example.org--
""".encode()


def postfix_delayed(verp: str, recipient: str, original_id: str) -> bytes:
    """Postfix's warning (delay_warning_time): still queued, still being retried."""
    return f"""\
Return-Path: <>
X-Original-To: {verp}
Delivered-To: {verp}
From: MAILER-DAEMON@relay.example.org (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4QxA1d3EfG.1795428000/relay.example.org"

--4QxA1d3EfG.1795428000/relay.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is a warning only; you do not need to send your message again.

--4QxA1d3EfG.1795428000/relay.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.org
X-Postfix-Sender: rfc822; {verp}

Final-Recipient: rfc822; {recipient}
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.slow.example.net[203.0.113.9]:25:
    Connection timed out
Will-Retry-Until: Sat, 28 Nov 2026 06:00:03 +0000 (UTC)

--4QxA1d3EfG.1795428000/relay.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{ORIGINAL_HEADERS.format(recipient=recipient, original_id=original_id)}
--4QxA1d3EfG.1795428000/relay.example.org--
""".encode()


def exim_hard(verp: str, recipient: str, original_id: str) -> bytes:
    """Exim 4's report (its boundary ends in -eximdsn-), delivered locally with Envelope-to."""
    return f"""\
Return-path: <>
Envelope-to: {verp}
Delivery-date: Mon, 23 Nov 2026 06:01:12 +0000
Received: from mail by mx.example.com with local (Exim 4.96)
\tid 1rAbCd-0003Xy-2Q
\tfor {verp}; Mon, 23 Nov 2026 06:01:12 +0000
X-Failed-Recipients: {recipient}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mx.example.com>
To: {verp}
Content-Type: multipart/report; report-type=delivery-status; boundary=1795413672-eximdsn-77123
MIME-Version: 1.0
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1rAbCd-0003Xy-2Q@mx.example.com>
Date: Mon, 23 Nov 2026 06:01:12 +0000

--1795413672-eximdsn-77123
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    mailbox is full: retry timeout exceeded

--1795413672-eximdsn-77123
Content-type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Action: failed
Final-Recipient: rfc822;{recipient}
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 mailbox full

--1795413672-eximdsn-77123
Content-type: message/rfc822

{ORIGINAL_HEADERS.format(recipient=recipient, original_id=original_id)}{ORIGINAL_BODY}
--1795413672-eximdsn-77123--
""".encode()


def gmail_hard(verp: str, recipient: str, original_id: str) -> bytes:
    """Gmail's mailer-daemon: an HTML notice first, then the report, then only the original's headers."""
    return f"""\
Delivered-To: {verp}
Return-Path: <>
Received: by mail-sor-f69.google.com with SMTPS id a1sor123456
\tfor <{verp}>; Mon, 23 Nov 2026 06:00:09 -0800 (PST)
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {verp}
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: {original_id}
In-Reply-To: {original_id}
X-Failed-Recipients: {recipient}
Message-ID: <67a1b2c3.0a1b2c3d.abc.1234.GMR@mx.google.com>
Date: Mon, 23 Nov 2026 06:00:09 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="0000000000001a2b3c4d5e6f7a8b"; report-type=delivery-status

--0000000000001a2b3c4d5e6f7a8b
Content-Type: multipart/related; boundary="0000000000001a2b3c4d5e6f7a8c"

--0000000000001a2b3c4d5e6f7a8c
Content-Type: multipart/alternative; boundary="0000000000001a2b3c4d5e6f7a8d"

--0000000000001a2b3c4d5e6f7a8d
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {recipient} because the address couldn't be
found, or is unable to receive mail.

--0000000000001a2b3c4d5e6f7a8d
Content-Type: text/html; charset="UTF-8"

<html><body><h2>Address not found</h2></body></html>
--0000000000001a2b3c4d5e6f7a8d--

--0000000000001a2b3c4d5e6f7a8c--

--0000000000001a2b3c4d5e6f7a8b
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; digest.example.org
Arrival-Date: Mon, 23 Nov 2026 06:00:08 -0800 (PST)
X-Original-Message-ID: {original_id}

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (2001:db8::1b, the server for the domain gmail.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.
Last-Attempt-Date: Mon, 23 Nov 2026 06:00:09 -0800 (PST)

--0000000000001a2b3c4d5e6f7a8b
Content-Type: text/rfc822-headers

Return-Path: <{verp}>
{ORIGINAL_HEADERS.format(recipient=recipient, original_id=original_id)}
--0000000000001a2b3c4d5e6f7a8b--
""".encode()


def arf_complaint(
    verp: str, recipient: str, original_id: str, *, to: str = "fbl@example.org", feedback_type: str = "abuse"
) -> bytes:
    """A feedback loop's complaint: sent to the address registered with the provider, not the return path;
    the original as the recipient's mailbox had it, Return-Path included, comes along."""
    return f"""\
Return-Path: <feedback@fbl.mailprovider.example>
Delivered-To: {to}
From: Feedback Loop <feedback@fbl.mailprovider.example>
To: {to}
Subject: Complaint about a message from example.org
Date: Tue, 24 Nov 2026 09:12:44 +0000
Message-ID: <fbl-5f1e2d3c@fbl.mailprovider.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="fbl_part_8a7b6c"

--fbl_part_8a7b6c
Content-Type: text/plain; charset="us-ascii"

A user of this mail provider marked the attached message as unwanted.

--fbl_part_8a7b6c
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: MailProviderFBL/2.1
Version: 1
Original-Mail-From: <{verp}>
Arrival-Date: Mon, 23 Nov 2026 06:00:04 +0000
Source-IP: 192.0.2.10
Reported-Domain: example.org

--fbl_part_8a7b6c
Content-Type: message/rfc822
Content-Disposition: inline

Return-Path: <{verp}>
{ORIGINAL_HEADERS.format(recipient=recipient, original_id=original_id)}{ORIGINAL_BODY}
--fbl_part_8a7b6c--
""".encode()


def vacation_reply(verp: str) -> bytes:
    return f"""\
Return-Path: <reader@example.net>
Delivered-To: {verp}
From: A. Reader <reader@example.net>
To: {verp}
Subject: Out of office: Your paper digest: 3 new papers
Auto-Submitted: auto-replied
Date: Mon, 23 Nov 2026 07:30:00 +0100
Message-ID: <ooo-12345@example.net>
Content-Type: text/plain; charset=utf-8

I am away until the 30th and will read your message when I am back.
""".encode()


def report_without_status_part(verp: str, recipient: str, original_id: str) -> bytes:
    """Says it is a delivery report, has a notice and the original, but no message/delivery-status."""
    return f"""\
Delivered-To: {verp}
From: MAILER-DAEMON@relay.example.org (Mail Delivery System)
To: {verp}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="cut-here-42"

--cut-here-42
Content-Type: text/plain; charset=us-ascii

Your message to {recipient} could not be delivered.

--cut-here-42
Content-Type: message/rfc822

{ORIGINAL_HEADERS.format(recipient=recipient, original_id=original_id)}{ORIGINAL_BODY}
--cut-here-42--
""".encode()


def report_without_boundary(verp: str) -> bytes:
    return f"""\
Delivered-To: {verp}
From: MAILER-DAEMON@relay.example.org
To: {verp}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status

Final-Recipient: rfc822; someone@example.net
Action: failed
Status: 5.1.1
""".encode()


# Bytes that are no email at all: a PNG signature, NULs and invalid UTF-8.
GARBAGE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01\xc3\x28\x9f" * 20
