"""Reading reports: each kind from the servers that send it, and anything else without raising."""

from __future__ import annotations

import random

import pytest

from digest.bounces.parse import BounceKind, parse_report
from tests.unit.bounces import samples

VERP = "bounces+3ochxkqbyvm7aqs5pbm@example.org"
RCPT = "gone@example.net"
MID = "<179541360201.7.12345678901234567@example.org>"


@pytest.mark.parametrize(
    ("sample", "status", "diagnostic"),
    [
        (samples.postfix_hard, "5.1.1", "Recipient address rejected: User unknown in virtual mailbox table"),
        (samples.exim_hard, "5.2.2", "552 5.2.2 mailbox full"),
        (samples.gmail_hard, "5.1.1", "The email account that you tried to reach does not exist."),
    ],
)
def test_a_permanent_failure_is_a_hard_bounce_with_its_recipient_status_and_reason(
    sample: samples.Sample, status: str, diagnostic: str
) -> None:
    report = parse_report(sample(VERP, RCPT, MID))
    assert report.kind is BounceKind.HARD
    assert (report.recipient, report.status) == (RCPT, status)
    assert report.diagnostic is not None and diagnostic in report.diagnostic
    assert "\n" not in report.diagnostic  # folded lines are unfolded
    assert report.return_paths[0] == VERP
    assert report.original_message_id == MID
    assert status in report.reason and diagnostic in report.reason


def test_postfix_local_unknown_user_is_a_hard_bounce() -> None:
    report = parse_report(samples.postfix_hard(VERP, "nouser@localhost", MID, local_unknown=True))
    assert (report.kind, report.status, report.recipient) == (BounceKind.HARD, "5.1.1", "nouser@localhost")
    assert report.diagnostic == 'X-Postfix; unknown user: "nouser"'


def test_a_server_giving_up_after_deferrals_is_a_soft_bounce() -> None:
    report = parse_report(samples.postfix_gave_up(VERP, RCPT, MID))
    assert (report.kind, report.status) == (BounceKind.SOFT, "4.4.1")
    assert report.diagnostic and "Connection timed out" in report.diagnostic
    # Only the headers came back (text/rfc822-headers); the Message-ID is read from them.
    assert report.original_message_id == MID


def test_a_delay_warning_is_only_a_report() -> None:
    report = parse_report(samples.postfix_delayed(VERP, RCPT, MID))
    assert (report.kind, report.status, report.recipient) == (BounceKind.DELAYED, "4.4.1", RCPT)


def test_where_the_digest_is_named_postfix_exim_and_gmail() -> None:
    # Postfix: Delivered-To, X-Original-To and X-Postfix-Sender; Exim: Envelope-to; Gmail: Delivered-To
    # and the Return-Path of the returned headers. One address each time, once.
    for sample in (samples.postfix_hard, samples.exim_hard, samples.gmail_hard):
        assert parse_report(sample(VERP, RCPT, MID)).return_paths == (VERP,), sample.__name__
    upper = parse_report(samples.postfix_hard(VERP.upper(), RCPT, MID))
    assert upper.return_paths[0] == VERP.upper()


def test_a_feedback_loop_report_is_a_complaint_tied_through_the_original_envelope_sender() -> None:
    report = parse_report(samples.arf_complaint(VERP, RCPT, MID))
    assert (report.kind, report.feedback_type, report.recipient) == (BounceKind.COMPLAINT, "abuse", RCPT)
    # Delivered to the feedback address, not the return path: the report names the return path itself.
    assert report.return_paths == ("fbl@example.org", VERP)
    assert report.original_message_id == MID
    assert report.reason.startswith("complaint:")


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure"])
def test_feedback_that_is_not_a_complaint_is_unrelated(feedback_type: str) -> None:
    report = parse_report(samples.arf_complaint(VERP, RCPT, MID, feedback_type=feedback_type))
    assert report.kind is BounceKind.UNRELATED
    assert feedback_type in report.explanation


def test_an_automatic_reply_is_unrelated() -> None:
    report = parse_report(samples.vacation_reply(VERP))
    assert report.kind is BounceKind.UNRELATED
    assert "automatic reply" in report.explanation


def test_a_bounce_in_no_standard_format_is_unrelated_and_says_so() -> None:
    text = (
        b"From: MAILER-DAEMON@old.example.net\nTo: digest@example.org\nX-Failed-Recipients: a@example.net\n"
        b"Subject: failure notice\n\nSorry, I could not deliver your message.\n"
    )
    report = parse_report(text)
    assert report.kind is BounceKind.UNRELATED
    assert "not in the standard report format" in report.explanation


@pytest.mark.parametrize(
    ("data", "explained"),
    [
        (samples.report_without_status_part(VERP, RCPT, MID), "without its message/delivery-status part"),
        (samples.report_without_boundary(VERP), "parts cannot be found"),
        (samples.GARBAGE, "not an email message"),
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
    ],
)
def test_a_broken_report_is_malformed_and_says_why(data: bytes, explained: str) -> None:
    report = parse_report(data)
    assert report.kind is BounceKind.MALFORMED
    assert explained in report.explanation


def test_a_failed_action_without_a_failure_code_is_malformed_not_a_guess() -> None:
    data = samples.postfix_hard(VERP, RCPT, MID).replace(b"Status: 5.1.1\n", b"Status: unknown\n")
    data = data.replace(b"550 5.1.1", b"mailbox gone").replace(b"Diagnostic-Code: smtp;", b"X-Note:")
    report = parse_report(data)
    assert report.kind is BounceKind.MALFORMED
    assert "without a failure status code" in report.explanation


def test_a_missing_status_is_read_from_the_quoted_smtp_reply() -> None:
    data = samples.exim_hard(VERP, RCPT, MID).replace(b"Status: 5.2.2\n", b"")
    data = data.replace(b"552 5.2.2 mailbox full", b"550 no such user here")
    report = parse_report(data)
    assert (report.kind, report.status) == (BounceKind.HARD, "5.0.0")


def test_with_several_recipients_the_worst_outcome_is_the_one_reported() -> None:
    data = samples.postfix_delayed(VERP, RCPT, MID).replace(
        b"Will-Retry-Until",
        b"X-Placeholder: 1\n\nFinal-Recipient: rfc822; gone@example.net\nAction: failed\nStatus: 5.1.1\n"
        b"X-Later",
    )
    report = parse_report(data)
    assert (report.kind, report.status) == (BounceKind.HARD, "5.1.1")


def test_global_delivery_status_for_smtputf8_mail_is_read_too() -> None:
    data = samples.postfix_hard(VERP, RCPT, MID).replace(
        b"Content-Type: message/delivery-status", b"Content-Type: message/global-delivery-status"
    )
    report = parse_report(data)
    assert (report.kind, report.status, report.recipient) == (BounceKind.HARD, "5.1.1", RCPT)


def test_nothing_raises_on_cut_or_scrambled_reports() -> None:
    rng = random.Random(20261123)
    originals = [
        s(VERP, RCPT, MID)
        for s in (samples.postfix_hard, samples.exim_hard, samples.gmail_hard, samples.arf_complaint)
    ]
    for data in originals:
        for _ in range(60):
            cut = data[: rng.randrange(len(data))]
            scrambled = bytearray(data)
            for _ in range(rng.randrange(1, 40)):
                scrambled[rng.randrange(len(scrambled))] = rng.randrange(256)
            for variant in (cut, bytes(scrambled)):
                report = parse_report(variant)
                assert isinstance(report.kind, BounceKind) and report.explanation
