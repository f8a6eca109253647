"""An SMTP sink in its own OS process, for crash tests, fault tests and throughput benchmarks.

The in-process sink in the test suite shares the sender's interpreter, so it can neither be killed
independently nor measured on its own; this one runs as `python -m tools.sink` and leaves behind
an append-only JSON-lines record that outlives it. Faults are injected per recipient address so a
test can make one mailbox misbehave while the rest of a batch goes through.

Usage:
    python -m tools.sink --host 127.0.0.1 --port PORT --record FILE \
        [--faults FILE] [--keep-dir DIR] [--delay-ms X]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import decode_header, make_header
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from aiosmtpd.smtp import SMTP, syntax

#: Fault actions taken when the recipient is named (RCPT TO).
RCPT_ACTIONS: Final = frozenset({"421", "451", "550", "drop"})
#: Fault actions taken only once the whole message has been received (end of DATA).
#: `accept_then_drop` queues (records) the message and then hangs up before the 250: the reply is lost.
DATA_ACTIONS: Final = frozenset({"drop_after_data", "554_after_data", "accept_then_drop"})
ACTIONS: Final = RCPT_ACTIONS | DATA_ACTIONS

_REPLIES: Final = {
    "421": "421 4.3.0 try again later",
    "451": "451 4.3.0 temporary failure",
    "550": "550 5.1.1 no such user",
    "554_after_data": "554 5.7.1 rejected",
}

# Set on an aiosmtpd Envelope so after-DATA faults picked at RCPT time travel with the transaction
# and vanish with it on RSET or at the end of DATA.
_PENDING_ATTR: Final = "digest_sink_pending_faults"

_HEADER_END = re.compile(rb"\r?\n\r?\n")
# A header line plus its folded continuation lines; `.` stops at LF, so CRs are stripped later.
_WANTED_HEADER = re.compile(rb"^(message-id|subject)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_LINE_BREAK = re.compile(rb"\r?\n")
_LISTENING = re.compile(r"listening on (?P<host>.+):(?P<port>\d+)")


@dataclass(frozen=True, slots=True)
class FaultRule:
    """What to do to one recipient; `times` of None means the fault never wears off."""

    action: str
    times: int | None = None


def parse_faults(spec: Mapping[str, Any]) -> dict[str, FaultRule]:
    """Validate a fault specification up front, so a typo fails the test that wrote it.

    Without this, a misspelt action would only surface as a sink that never misbehaves.
    """
    rules: dict[str, FaultRule] = {}
    for address, rule in spec.items():
        if not isinstance(address, str) or not isinstance(rule, Mapping):
            raise ValueError(f"fault rule for {address!r} must map an address to an object, got {rule!r}")
        action = rule.get("action")
        if action not in ACTIONS:
            raise ValueError(f"fault rule for {address!r}: action {action!r} is not one of {sorted(ACTIONS)}")
        times = rule.get("times")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
            raise ValueError(f"fault rule for {address!r}: times must be a non-negative integer or null")
        unknown = set(rule) - {"action", "times"}
        if unknown:
            raise ValueError(f"fault rule for {address!r}: unknown keys {sorted(unknown)}")
        rules[address.lower()] = FaultRule(action=action, times=times)
    return rules


def scan_headers(raw: bytes) -> tuple[str | None, str | None]:
    """Pull Message-ID and Subject out of the header block without building a MIME tree.

    Full parsing costs far more than the rest of the per-message work, and only these two
    headers are needed to match deliveries against what the sender thinks it sent. The first
    occurrence of each wins, as it does for `EmailMessage.__getitem__`.
    """
    if raw.startswith((b"\r\n", b"\n")):
        return None, None
    end = _HEADER_END.search(raw)
    head = raw if end is None else raw[: end.start()]
    message_id: str | None = None
    subject: str | None = None
    for match in _WANTED_HEADER.finditer(head):
        value = _LINE_BREAK.sub(b"", match.group(2)).strip().decode("utf-8", "replace")
        if match.group(1).lower() == b"message-id":
            if message_id is None:
                message_id = value
        elif subject is None:
            subject = _decode_words(value)
        if message_id is not None and subject is not None:
            break
    return message_id, subject


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words, paying for it only when some are present."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError):
        return value


class RecordFile:
    """Append-only JSON lines written straight to the kernel.

    Each line goes out in one unbuffered write on an O_APPEND descriptor, so a reader (or a
    SIGKILL) never sees two lines interleaved and never loses a line the sink already acknowledged.
    There is deliberately no fsync: the record has to survive the process, not the machine.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, entry: Mapping[str, Any]) -> None:
        if self._fd is None:
            raise ValueError(f"record {self.path} is closed")
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, line)
        while written < len(line):  # only on a full disk or similar; keep the line whole if we can
            written += os.write(self._fd, line[written:])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def _hang_up(server: SMTP, *, abruptly: bool) -> None:
    """Close the client's connection and park the command handler until aiosmtpd cancels it.

    Returning a reply after closing by hand would make aiosmtpd write to a dead transport;
    waiting for the cancellation that connection loss brings keeps the closed connection silent.
    `abruptly` discards anything still queued for the client instead of flushing it.
    """
    transport = server.transport
    if transport is not None:
        if abruptly and isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()
    await asyncio.get_running_loop().create_future()


class SinkHandler:
    """aiosmtpd hooks that record deliveries and apply the fault rules."""

    def __init__(
        self,
        record: RecordFile,
        faults: Mapping[str, FaultRule] | None = None,
        *,
        keep_dir: Path | None = None,
        delay_ms: float = 0,
    ) -> None:
        self.record = record
        self.faults = dict(faults or {})
        self.keep_dir = keep_dir
        self.delay = delay_ms / 1000
        self.accepted = 0
        # Counted only for addresses that have a rule, so a benchmark with 100,000 distinct
        # recipients costs no memory here.
        self.attempts: dict[str, int] = {}

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Offer PIPELINING (RFC 2920) as real MTAs do; aiosmtpd already reads pipelined commands in turn."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    def _active_rule(self, address: str) -> FaultRule | None:
        key = address.lower()
        rule = self.faults.get(key)
        if rule is None:
            return None
        attempt = self.attempts.get(key, 0) + 1
        self.attempts[key] = attempt
        return rule if rule.times is None or attempt <= rule.times else None

    def _fault(self, action: str, address: str) -> None:
        self.record.append({"fault": action, "to": address, "at": time.time()})

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        rule = self._active_rule(address)
        if rule is not None:
            if rule.action in DATA_ACTIONS:
                pending: list[tuple[str, str]] = getattr(envelope, _PENDING_ATTR, [])
                pending.append((rule.action, address))
                setattr(envelope, _PENDING_ATTR, pending)
            else:
                self._fault(rule.action, address)
                if rule.action == "drop":
                    await _hang_up(server, abruptly=True)
                if rule.action == "421":
                    await server.push(_REPLIES["421"])
                    await _hang_up(server, abruptly=False)
                return _REPLIES[rule.action]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        pending: list[tuple[str, str]] = getattr(envelope, _PENDING_ATTR, [])
        lose_reply = [address for action, address in pending if action == "accept_then_drop"]
        pending = [(action, address) for action, address in pending if action != "accept_then_drop"]
        if pending:
            # A dropped connection pre-empts a 554: the client can only ever see one of them.
            dropped = any(a == "drop_after_data" for a, _ in pending)
            action = "drop_after_data" if dropped else "554_after_data"
            for pending_action, address in pending:
                if pending_action == action:
                    self._fault(action, address)
            if action == "drop_after_data":
                await _hang_up(server, abruptly=True)
            return _REPLIES[action]

        raw: bytes = envelope.original_content
        message_id, subject = scan_headers(raw)
        self.accepted += 1
        if self.keep_dir is not None:
            # Written before the record line, so every recorded message has its file; the n-th
            # accepted line in the record is <n>.eml.
            (self.keep_dir / f"{self.accepted}.eml").write_bytes(raw)
        self.record.append(
            {
                "to": list(envelope.rcpt_tos),
                "from": envelope.mail_from,
                "message_id": message_id,
                "subject": subject,
                "bytes": len(raw),
                "at": time.time(),
            }
        )
        for address in lose_reply:
            self._fault("accept_then_drop", address)
        if lose_reply:
            await _hang_up(server, abruptly=True)
        # Like a real MTA, the message is queued (recorded) before the reply, and a client that
        # disconnects while waiting for the reply does not unsend it.
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 OK"


class SinkSMTP(SMTP):
    """aiosmtpd's SMTP protocol with a DATA phase that reads in bulk.

    Stock aiosmtpd reads DATA one line at a time: hundreds of Python-level reads for each HTML
    digest, which made that loop most of the sink's CPU time in a benchmark. This reads whatever
    is buffered in one go and leaves the per-line work to C-level bytes methods, while keeping the
    stock replies (354, 500 for an over-long line, 552 for too much data) and dot-unstuffing.
    """

    def __init__(self, handler: SinkHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink_handler = handler

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert envelope is not None
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")

        wire = await self._read_data()
        if wire is None:
            status = "552 Error: Too much mail data"
        elif wire and max(map(len, wire.split(b"\r\n"))) > self.line_length_limit - 2:
            status = "500 Line too long (see RFC5321 4.5.3.1.6)"
        else:
            content = wire[1:] if wire.startswith(b".") else wire
            content = content.replace(b"\r\n.", b"\r\n")
            envelope.content = envelope.original_content = content
            status = await self.sink_handler.handle_DATA(self, self.session, envelope)
        self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it unannotated
        await self.push(status)

    async def _read_data(self) -> bytes | None:
        """Read DATA up to the lone dot; None if it outgrew `data_size_limit` (but was drained).

        The result is still dot-stuffed and ends with the CRLF that precedes the final dot (empty
        if the dot came first). Reading up to each ".CRLF" and checking the two bytes before it in
        our own buffer never over-reads past the terminator, so whatever the client sends next
        stays in the stream for the command loop.
        """
        reader = self._reader
        limit = self.data_size_limit
        buffer = bytearray()
        discarded = 0  # bytes already dropped from the front of buffer once the limit was passed
        while True:
            try:
                buffer += await reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as error:
                # The stream reader's limit is one SMTP line; read past it in bulk instead.
                buffer += await reader.readexactly(error.consumed)
            else:
                dot = len(buffer) - 3
                if (dot == 0 and discarded == 0) or (dot >= 2 and buffer[dot - 2 : dot] == b"\r\n"):
                    if limit and discarded + dot > limit:
                        return None
                    del buffer[dot:]
                    return bytes(buffer)
            if limit and discarded + len(buffer) > limit and len(buffer) > 2:
                # Everything in buffer is message content by now, so the limit is already blown;
                # keep two bytes for the CRLF check and drop the rest to bound memory.
                discarded += len(buffer) - 2
                del buffer[:-2]


async def serve(
    host: str,
    port: int,
    record_path: Path,
    *,
    faults: Mapping[str, FaultRule] | None = None,
    keep_dir: Path | None = None,
    delay_ms: float = 0,
) -> None:
    """Run until SIGTERM or SIGINT; a plain asyncio server keeps everything on one thread."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    record = RecordFile(record_path)
    handler = SinkHandler(record, faults, keep_dir=keep_dir, delay_ms=delay_ms)
    live: weakref.WeakSet[SinkSMTP] = weakref.WeakSet()

    def connection() -> SinkSMTP:
        # A fixed hostname spares a getfqdn() DNS lookup on every connection.
        protocol = SinkSMTP(
            handler, hostname="digest-sink", ident="digest sink", enable_SMTPUTF8=True, loop=loop
        )
        live.add(protocol)
        return protocol

    try:
        server = await loop.create_server(connection, host, port, backlog=1024)
        bound_port = server.sockets[0].getsockname()[1]
        print(f"listening on {host}:{bound_port}", flush=True)
        await stop.wait()
        server.close()
        for protocol in list(live):
            if protocol.transport is not None:
                protocol.transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=2)
    finally:
        record.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sink", description="Run the SMTP sink.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0: the OS picks, see the output")
    parser.add_argument("--record", type=Path, required=True, help="JSON-lines file to append to")
    parser.add_argument("--faults", type=Path, help="JSON object mapping recipient addresses to fault rules")
    parser.add_argument("--keep-dir", type=Path, help="also store each accepted message as DIR/<n>.eml")
    parser.add_argument(
        "--delay-ms", type=float, default=0, help="pause after recording a message, before the 250"
    )
    args = parser.parse_args(argv)

    try:
        faults = parse_faults(json.loads(args.faults.read_text())) if args.faults else {}
    except (OSError, ValueError) as error:
        parser.error(f"--faults {args.faults}: {error}")
    if args.keep_dir is not None:
        args.keep_dir.mkdir(parents=True, exist_ok=True)
    keep_dir: Path | None = args.keep_dir
    delay_ms: float = args.delay_ms
    try:
        asyncio.run(
            serve(args.host, args.port, args.record, faults=faults, keep_dir=keep_dir, delay_ms=delay_ms)
        )
    except OSError as error:  # cannot bind, or cannot open the record: say so without a traceback
        print(f"tools.sink: {error}", file=sys.stderr)
        return 1
    return 0


def peak_rss_mb(pid: int) -> float:
    """A running process's peak resident memory (VmHWM), in MB; Linux only."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def read_record(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split a record into accepted messages and faults.

    The sink may be mid-write (or was killed mid-write), so text after the last newline is an
    unfinished line and is ignored; a damaged line anywhere else is a real bug and raises.
    """
    data = Path(path).read_bytes()
    complete, _, _partial = data.rpartition(b"\n")
    accepted: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
        try:
            entry = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: damaged record line {line[:200]!r}") from error
        (faults if "fault" in entry else accepted).append(entry)
    return accepted, faults


class SinkProcess:
    """A sink running as a child process, for tests and benchmarks that must kill or measure it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        record: Path,
        host: str,
        port: int,
        stderr: IO[bytes],
        faults_file: Path | None,
    ) -> None:
        self.record = record
        self.host = host
        self._process = process
        self._port = port
        self._stderr = stderr
        self._faults_file = faults_file
        self._stderr_final = ""

    @classmethod
    def start(
        cls,
        record: Path,
        *,
        port: int | None = None,
        faults: Mapping[str, Any] | None = None,
        delay_ms: float = 0,
        keep_dir: Path | None = None,
        host: str = "127.0.0.1",
        timeout: float = 15.0,
    ) -> SinkProcess:
        """Spawn the sink and return once it accepts connections.

        Without a port the child binds port 0 and reports the one it got, which cannot race with
        another process the way probing for a free port and passing it on can.
        """
        record = Path(record)
        command = [sys.executable, "-m", "tools.sink", "--host", host, "--port", str(port or 0)]
        command += ["--record", str(record)]
        faults_file: Path | None = None
        if faults is not None:
            parse_faults(faults)  # fail here, with the caller's traceback, rather than in the child
            faults_file = record.with_name(record.name + ".faults.json")
            faults_file.write_text(json.dumps(dict(faults)))
            command += ["--faults", str(faults_file)]
        if keep_dir is not None:
            command += ["--keep-dir", str(keep_dir)]
        if delay_ms:
            command += ["--delay-ms", str(delay_ms)]

        # The child must import this very checkout, whatever the caller's working directory is.
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        # stderr goes to a file rather than a pipe: nobody drains it while the sink runs, and a
        # full pipe would stall the sink in the middle of a benchmark.
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child, closed in _cleanup
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            line = cls._read_first_line(process, timeout)
            match = _LISTENING.fullmatch(line)
            if match is None:
                raise RuntimeError(f"tools.sink printed {line!r} instead of 'listening on HOST:PORT'")
        except BaseException as error:
            if process.poll() is None:
                process.kill()
            process.wait()
            stderr.seek(0)
            detail = stderr.read().decode("utf-8", "replace").strip()
            stderr.close()
            if process.stdout is not None:
                process.stdout.close()
            if faults_file is not None:
                faults_file.unlink(missing_ok=True)
            if not isinstance(error, RuntimeError):
                raise
            raise RuntimeError(
                f"{error} (exit status {process.returncode}); its stderr:\n{detail or '(empty)'}"
            ) from None
        return cls(process, record, host, int(match["port"]), stderr, faults_file)

    @staticmethod
    def _read_first_line(process: subprocess.Popen[bytes], timeout: float) -> str:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"tools.sink did not start listening within {timeout:g}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("tools.sink exited before it started listening")
            buffer += chunk
        return buffer.split(b"\n", 1)[0].decode("utf-8", "replace").strip()

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """Ask the sink to shut down as an operator would, escalating to SIGKILL if it hangs.

        Returns the exit status, so a test can tell a clean exit from a crash.
        """
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._cleanup()
        return self._process.returncode

    def kill(self) -> int:
        """SIGKILL the sink, for crash tests: no shutdown code of its own gets to run."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._cleanup()
        return self._process.returncode

    def _cleanup(self) -> None:
        if self._process.stdout is not None:
            self._process.stdout.close()
        if not self._stderr.closed:
            self._stderr_final = self._read_stderr()
            self._stderr.close()
        if self._faults_file is not None:
            self._faults_file.unlink(missing_ok=True)

    def stderr_text(self) -> str:
        """What the child wrote to stderr so far; the first place to look when a test fails."""
        return self._stderr_final if self._stderr.closed else self._read_stderr()

    def _read_stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def messages(self) -> list[dict[str, Any]]:
        return read_record(self.record)[0]

    def faults(self) -> list[dict[str, Any]]:
        return read_record(self.record)[1]

    def messages_count(self) -> int:
        """How many messages were accepted, without parsing every record (a benchmark polls this)."""
        try:
            data = self.record.read_bytes()
        except FileNotFoundError:
            return 0
        complete = data[: data.rfind(b"\n") + 1]
        return complete.count(b"\n") - complete.count(b'{"fault"')

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the sink, so a benchmark can bound what the sink itself costs."""
        if self._process.poll() is not None:
            raise RuntimeError("the sink is not running; its peak RSS is gone with it")
        return peak_rss_mb(self.pid)

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(main())
