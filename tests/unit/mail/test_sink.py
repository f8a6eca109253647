"""The out-of-process SMTP sink, driven by smtplib the way the real sender talks to a mail server."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from tools.sink import SinkProcess, read_record, scan_headers

SENDER = "digest@example.org"
READER = "reader@example.org"


def make_message(
    to: str = READER, subject: str = "Your papers for today", body: str = "Hello.\n"
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.org")
    message.set_content(body)
    return message


class Sinks:
    """Starts sinks on demand and stops whatever a test left running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[SinkProcess] = []

    def start(self, faults: dict[str, Any] | None = None, **kwargs: Any) -> SinkProcess:
        sink = SinkProcess.start(self.tmp_path / f"record-{len(self.started)}.jsonl", faults=faults, **kwargs)
        self.started.append(sink)
        return sink


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    factory = Sinks(tmp_path)
    try:
        yield factory
    finally:
        for sink in factory.started:
            sink.stop()


@pytest.fixture
def sink(sinks: Sinks) -> SinkProcess:
    return sinks.start()


def connect(sink: SinkProcess) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
    client.ehlo()
    return client


def start_transaction(sink: SinkProcess) -> smtplib.SMTP:
    client = connect(sink)
    code, _ = client.mail(SENDER)
    assert code == 250
    return client


def test_plain_delivery_is_recorded(sink: SinkProcess) -> None:
    message = make_message()
    with connect(sink) as client:
        assert client.send_message(message) == {}

    (record,) = sink.messages()
    assert record["to"] == [READER]
    assert record["from"] == SENDER
    assert record["message_id"] == message["Message-ID"]
    assert record["subject"] == "Your papers for today"
    assert record["bytes"] > 100
    assert record["at"] == pytest.approx(time.time(), abs=60)
    assert "fault" not in record
    assert sink.faults() == []
    assert sink.url == f"smtp://127.0.0.1:{sink.port}"


def test_encoded_subject_and_several_recipients(sink: SinkProcess) -> None:
    message = make_message(subject="Neue Artikel für dich – Ĳssel")
    with connect(sink) as client:
        client.send_message(message, to_addrs=[READER, "second@example.org"])

    (record,) = sink.messages()
    assert record["to"] == [READER, "second@example.org"]
    assert record["subject"] == "Neue Artikel für dich – Ĳssel"


def test_messages_keep_their_order_over_one_connection(sink: SinkProcess) -> None:
    sent = [make_message(to=f"r{i}@example.org") for i in range(50)]
    with connect(sink) as client:
        for message in sent:
            client.send_message(message)

    records = sink.messages()
    assert [r["message_id"] for r in records] == [m["Message-ID"] for m in sent]
    assert [r["to"] for r in records] == [[m["To"]] for m in sent]


def test_keep_dir_stores_the_message_as_received(sinks: Sinks, tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    sink = sinks.start(keep_dir=keep)
    # Lines starting with a dot are dot-stuffed on the wire and must come back unstuffed.
    message = make_message(body=".leading dot\n..two dots\nplain\n.\n")
    with connect(sink) as client:
        client.send_message(message)

    raw = (keep / "1.eml").read_bytes()
    assert len(raw) == sink.messages()[0]["bytes"]
    kept = message_from_bytes(raw, policy=policy.default)
    assert isinstance(kept, EmailMessage)
    assert kept["Message-ID"] == message["Message-ID"]
    # The file holds the message exactly as received, CRLF line ends included.
    assert kept.get_content() == ".leading dot\r\n..two dots\r\nplain\r\n.\r\n"


def test_data_edge_cases_on_the_wire(sink: SinkProcess) -> None:
    with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as sock:
        replies = sock.makefile("rb")

        def command(line: bytes) -> bytes:
            sock.sendall(line)
            return replies.readline()

        assert replies.readline().startswith(b"220 ")
        assert command(b"HELO client\r\n").startswith(b"250")
        # A lone dot right after DATA is an empty message.
        assert command(b"MAIL FROM:<a@example.org>\r\n").startswith(b"250")
        assert command(b"RCPT TO:<b@example.org>\r\n").startswith(b"250")
        assert command(b"DATA\r\n").startswith(b"354")
        assert command(b".\r\n").startswith(b"250")
        # An over-long line is refused once the whole DATA has been read; the session goes on.
        assert command(b"MAIL FROM:<a@example.org>\r\n").startswith(b"250")
        assert command(b"RCPT TO:<b@example.org>\r\n").startswith(b"250")
        assert command(b"DATA\r\n").startswith(b"354")
        assert command(b"Subject: long\r\n\r\n" + b"x" * 2000 + b"\r\n.\r\n").startswith(b"500 ")
        # A final line ending in a dot is not the terminator; split writes must not confuse it.
        assert command(b"MAIL FROM:<a@example.org>\r\n").startswith(b"250")
        assert command(b"RCPT TO:<b@example.org>\r\n").startswith(b"250")
        assert command(b"DATA\r\n").startswith(b"354")
        sock.sendall(b"Message-ID: <split@example.org>\r\n\r\nends with a dot.\r")
        time.sleep(0.05)
        sock.sendall(b"\n.")
        time.sleep(0.05)
        assert command(b"\r\n").startswith(b"250")
        assert command(b"QUIT\r\n").startswith(b"221")

    empty, split = sink.messages()
    assert (empty["bytes"], empty["message_id"], empty["subject"]) == (0, None, None)
    assert split["message_id"] == "<split@example.org>"
    assert split["bytes"] == len(b"Message-ID: <split@example.org>\r\n\r\nends with a dot.\r\n")


def test_oversized_message_is_refused_after_it_has_been_read(sink: SinkProcess) -> None:
    with connect(sink) as client:
        client.mail(SENDER)
        client.rcpt(READER)
        # aiosmtpd's default limit is 32 MiB; the whole payload is drained before the reply.
        code, _ = client.data(b"Subject: big\r\n\r\n" + (b"y" * 98 + b"\r\n") * 340_000)
        assert code == 552
        assert client.noop()[0] == 250
        assert client.send_message(make_message()) == {}

    (record,) = sink.messages()
    assert record["subject"] == "Your papers for today"
    assert sink.peak_rss_mb() < 200


def test_421_refuses_the_recipient_and_closes_the_connection(sinks: Sinks) -> None:
    sink = sinks.start(faults={READER: {"action": "421", "times": None}})
    client = start_transaction(sink)
    assert client.rcpt(READER) == (421, b"4.3.0 try again later")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    client.close()

    assert sink.messages() == []
    assert [(f["fault"], f["to"]) for f in sink.faults()] == [("421", READER)]


def test_451_refuses_the_recipient_but_keeps_the_connection(sinks: Sinks) -> None:
    sink = sinks.start(faults={READER: {"action": "451", "times": None}})
    with start_transaction(sink) as client:
        assert client.rcpt(READER) == (451, b"4.3.0 temporary failure")
        assert client.noop()[0] == 250
        assert client.rcpt("other@example.org")[0] == 250
        assert client.data(make_message(to="other@example.org").as_bytes(policy=policy.SMTP))[0] == 250

    assert [r["to"] for r in sink.messages()] == [["other@example.org"]]
    assert [(f["fault"], f["to"]) for f in sink.faults()] == [("451", READER)]


def test_550_is_a_refused_recipient(sinks: Sinks) -> None:
    sink = sinks.start(faults={READER: {"action": "550", "times": None}})
    with connect(sink) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.send_message(make_message())

    assert refused.value.recipients == {READER: (550, b"5.1.1 no such user")}
    assert sink.messages() == []
    assert [f["fault"] for f in sink.faults()] == ["550"]


def test_drop_closes_the_connection_without_a_reply(sinks: Sinks) -> None:
    sink = sinks.start(faults={READER: {"action": "drop", "times": None}})
    client = start_transaction(sink)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.rcpt(READER)
    client.close()

    assert sink.messages() == []
    assert [(f["fault"], f["to"]) for f in sink.faults()] == [("drop", READER)]


def test_drop_after_data_disconnects_and_records_nothing(sinks: Sinks) -> None:
    sink = sinks.start(faults={READER: {"action": "drop_after_data", "times": None}})
    client = connect(sink)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.send_message(make_message())
    client.close()

    assert sink.messages() == []
    assert [(f["fault"], f["to"]) for f in sink.faults()] == [("drop_after_data", READER)]


def test_554_after_data_rejects_the_message_and_keeps_the_connection(sinks: Sinks) -> None:
    sink = sinks.start(faults={READER: {"action": "554_after_data", "times": None}})
    with connect(sink) as client:
        with pytest.raises(smtplib.SMTPDataError) as rejected:
            client.send_message(make_message(), to_addrs=[READER, "other@example.org"])
        assert (rejected.value.smtp_code, rejected.value.smtp_error) == (554, b"5.7.1 rejected")
        assert client.noop()[0] == 250

    assert sink.messages() == []
    assert [(f["fault"], f["to"]) for f in sink.faults()] == [("554_after_data", READER)]


def test_times_1_lets_the_second_attempt_through(sinks: Sinks) -> None:
    sink = sinks.start(faults={READER: {"action": "550", "times": 1}})
    first, second = make_message(), make_message()
    with connect(sink) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.send_message(first)
        assert client.send_message(second) == {}

    assert [r["message_id"] for r in sink.messages()] == [second["Message-ID"]]
    assert [f["fault"] for f in sink.faults()] == ["550"]


def test_attempts_are_counted_across_connections(sinks: Sinks) -> None:
    sink = sinks.start(faults={READER: {"action": "421", "times": 2}})
    for _ in range(2):
        with connect(sink) as client, pytest.raises(smtplib.SMTPRecipientsRefused):
            client.send_message(make_message())
    message = make_message()
    with connect(sink) as client:
        client.send_message(message)

    assert [r["message_id"] for r in sink.messages()] == [message["Message-ID"]]
    assert [f["fault"] for f in sink.faults()] == ["421", "421"]


def test_fault_addresses_match_case_insensitively(sinks: Sinks) -> None:
    sink = sinks.start(faults={"Reader@Example.org": {"action": "550", "times": None}})
    with connect(sink) as client, pytest.raises(smtplib.SMTPRecipientsRefused):
        client.send_message(make_message(to="READER@example.ORG"))
    assert [(f["fault"], f["to"]) for f in sink.faults()] == [("550", "READER@example.ORG")]


def test_delay_slows_the_reply_to_data(sinks: Sinks) -> None:
    sink = sinks.start(delay_ms=300)
    with connect(sink) as client:
        began = time.monotonic()
        client.send_message(make_message())
        took = time.monotonic() - began
    assert took >= 0.3
    assert len(sink.messages()) == 1


def test_record_survives_sigkill(sink: SinkProcess) -> None:
    sent = [make_message(to=f"r{i}@example.org") for i in range(200)]
    with connect(sink) as client:
        for message in sent:
            client.send_message(message)
        assert sink.kill() == -signal.SIGKILL

    assert sink.record.read_bytes().endswith(b"\n")
    accepted, faults = read_record(sink.record)
    assert [r["message_id"] for r in accepted] == [m["Message-ID"] for m in sent]
    assert faults == []


def test_read_record_ignores_a_partial_last_line(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    lines = [
        {"to": [READER], "from": SENDER, "message_id": "<1@x>", "subject": "s", "bytes": 1, "at": 1.0},
        {"fault": "550", "to": READER, "at": 2.0},
    ]
    record.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"to": ["cut@exa')
    assert read_record(record) == ([lines[0]], [lines[1]])

    record.write_text('{"to": ["cut@exa\n' + json.dumps(lines[0]) + "\n")
    with pytest.raises(ValueError, match="damaged"):
        read_record(record)


def test_scan_headers_reads_only_the_header_block() -> None:
    raw = (
        b"Subject: first\r\n"
        b"message-id:\r\n <folded@example.org>\r\n"
        b"Subject: second\r\n"
        b"\r\n"
        b"Message-ID: <in-body@example.org>\r\n"
    )
    assert scan_headers(raw) == ("<folded@example.org>", "first")
    assert scan_headers(b"To: x@example.org\r\n\r\nSubject: body\r\n") == (None, None)
    assert scan_headers(b"\r\nMessage-ID: <no-headers@example.org>\r\n") == (None, None)


def test_peak_rss_is_read_while_running(sink: SinkProcess) -> None:
    assert 1 < sink.peak_rss_mb() < 500
    assert sink.stop() == 0
    with pytest.raises(RuntimeError):
        sink.peak_rss_mb()


def test_command_line_prints_one_line_and_exits_cleanly_on_sigint(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    command = [
        sys.executable,
        "-m",
        "tools.sink",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--record",
        str(record),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(make_message())
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, rest, errors) == (0, b"", b"")
    assert len(read_record(record)[0]) == 1


def test_bad_fault_rules_fail_in_the_caller(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="action"):
        SinkProcess.start(tmp_path / "record.jsonl", faults={READER: {"action": "450", "times": None}})
    with pytest.raises(ValueError, match="times"):
        SinkProcess.start(tmp_path / "record.jsonl", faults={READER: {"action": "451", "times": -1}})


def test_a_sink_that_cannot_start_reports_its_stderr(sink: SinkProcess, tmp_path: Path) -> None:
    with pytest.raises(
        RuntimeError, match=r"(?is)exited before it started listening.*address already in use"
    ):
        SinkProcess.start(tmp_path / "other.jsonl", port=sink.port)


def test_faults_leave_no_noise_on_stderr(sinks: Sinks) -> None:
    actions = ["421", "451", "550", "drop", "drop_after_data", "554_after_data"]
    sink = sinks.start(faults={f"{a}@example.org": {"action": a, "times": None} for a in actions})
    for action in actions:
        client = connect(sink)
        try:
            client.send_message(make_message(to=f"{action}@example.org"))
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            client.close()
    with connect(sink) as client:
        client.send_message(make_message())

    assert len(sink.messages()) == 1
    assert [f["fault"] for f in sink.faults()] == actions
    assert sink.stop() == 0
    assert sink.stderr_text() == ""
