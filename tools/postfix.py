"""A private Postfix instance on loopback, for integration tests and the benchmark.

The sinks in the test suite answer what they are told to answer. A real relay is what the sender meets in
production: Postfix's own replies (PIPELINING and 8BITMIME offered, 250 with a queue id, 550 for an unknown
user in a domain it owns), its queueing, and above all the delivery status notifications it mails back
after it has accepted a message, RFC 3464 multipart/report with Action and Status fields. A bounce
processor that has only ever read hand-written DSNs has not been tested against the thing it must read.

Isolation: each instance has its own configuration directory (`postfix -c DIR`), queue directory, data
directory and log file under one directory, listens on 127.0.0.1 only, on a port of its own, and does
no DNS; nothing under /etc/postfix or /var/spool/postfix is read or written, the system-wide instance need
not be configured or running, and several instances can run side by side. Nothing leaves the machine: a
domain not listed below gets an `error:` transport, so it is refused at RCPT instead of relayed.

The port stays reserved by a socket of ours, bound but not listening, for the instance's lifetime. Postfix
binds its listener with SO_REUSEPORT, so two instances started on the same port would both succeed and
the kernel would share the connections between them; probing for a free port and closing the probe
leaves exactly that race open, and the reservation closes it.

Domains:
    discard.test, example.org   accepted and thrown away (`discard:`), counted in the log: the benchmark
    deliver.test                every address delivered into the Maildir `deliver`
    bounces.test                bounces@ (and bounces+anything@) delivered into the Maildir `bounces`
    unknown.test                accepted at RCPT, then bounced with 5.1.1: a real DSN to the sender
    deferred.test               accepted, deferred (4.4.1, its LMTP server is not there) until the
                                queue lifetime of a few seconds runs out, then a DSN with that status
    reject.test                 refused at RCPT time with 550 5.1.1 (a domain Postfix owns, no users)
    postfix.test                postmaster@, where Postfix's own notices go (Maildir `postmaster`)

Postfix must be started by root (its master process insists). Its delivery agent writes the Maildirs as
`nobody`, which therefore must be able to reach the instance's directory: without an argument, `start`
makes one under the system temporary directory and removes it on `stop`; pytest's `tmp_path` is not
reachable (its base directory is private to the user) and is refused with that reason.

Usage:
    with PostfixInstance.start() as postfix:
        SmtpMailer(postfix.url) ...
        postfix.wait_for_messages("deliver", 1)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final

POSTFIX: Final = Path("/usr/sbin/postfix")
HOST: Final = "127.0.0.1"
HOSTNAME: Final = "postfix.test"
DISCARD_DOMAINS: Final = ("discard.test", "example.org")
MAILDIRS: Final = ("deliver", "bounces", "postmaster")
#: How long a deferred message stays queued before Postfix gives up and mails a DSN: long enough for
#: one retry BACKOFF_SECONDS after the first attempt, so the DSN follows a real retry.
QUEUE_LIFETIME_SECONDS: Final = 5
BACKOFF_SECONDS: Final = 3
_DELIVERY_USER: Final = "nobody"

# One log line as postlogd writes it: "<date> <host> <syslog name>/<daemon>[<pid>]: <queue id>: <text>".
_LOG_LINE = re.compile(rb" \S+/(?P<daemon>[\w-]+)\[\d+\]: (?P<queue_id>[0-9A-Za-z]+): (?P<text>.*)")

_MASTER_CF: Final = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """The instance could not be set up, started or stopped; the message carries Postfix's own words."""


class PostfixInstance:
    """One running Postfix; `stop` (or leaving the `with` block) shuts it down and waits for its master."""

    def __init__(self, root: Path, reservation: socket.socket, *, owns_root: bool) -> None:
        self.root = root
        self.port: int = reservation.getsockname()[1]
        self._reservation = reservation
        self.config_dir = root / "etc"
        self.queue_dir = root / "queue"
        self.log_file = root / "maillog"
        self._owns_root = owns_root
        self._stopped = False
        # accepted_count reads the log incrementally, so polling it during a long benchmark stays cheap.
        self._log_offset = 0
        self._log_partial = b""
        self._received: set[bytes] = set()
        self._accepted = 0

    # Starting and stopping ---------------------------------------------------------------------------

    @classmethod
    def start(cls, root: Path | None = None, *, port: int | None = None) -> PostfixInstance:
        """Write the configuration, start the master and return once the SMTP banner has been read.

        Without a root a directory is made (and removed by `stop`); without a port a free one is taken.
        """
        if not POSTFIX.exists():
            raise PostfixError(f"{POSTFIX} is missing (Debian: apt-get install postfix; `make test` does)")
        if os.geteuid() != 0:
            raise PostfixError("Postfix's master process must be started by root")
        owns_root = root is None
        root = Path(tempfile.mkdtemp(prefix="digest-postfix-")) if root is None else Path(root).resolve()
        instance: PostfixInstance | None = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            _check_reachable(root)
            instance = cls(root, _reserve_port(port), owns_root=owns_root)
            instance._write_config()
            instance._start_master()
            return instance
        except BaseException:
            if instance is not None:
                instance.stop()
            elif owns_root:
                shutil.rmtree(root, ignore_errors=True)
            raise

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the master and its children; safe to call twice and after a failed start or test."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._stop_master(timeout)
        finally:
            self._reservation.close()
            if self._owns_root:
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostfixInstance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    def _postfix(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(POSTFIX), "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _start_master(self) -> None:
        result = self._postfix("start")
        if result.returncode != 0:
            raise PostfixError(
                f"postfix start failed ({result.returncode}): {result.stderr.strip()}\n{self._log_tail()}"
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection((HOST, self.port), timeout=5) as sock:
                    banner = sock.recv(512)
                if banner.startswith(b"220 "):
                    return
                raise PostfixError(f"Postfix greeted with {banner!r} on port {self.port}")
            except OSError as error:
                if time.monotonic() > deadline:
                    raise PostfixError(f"Postfix is not answering on port {self.port}: {error}") from None
                time.sleep(0.05)

    @property
    def master_pid(self) -> int | None:
        """The running master's pid, from the pid file Postfix keeps in its queue directory."""
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _stop_master(self, timeout: float = 15.0) -> None:
        pid = self.master_pid
        if pid is None or not _alive(pid):
            return
        # `postfix stop` lets the master end its children; the group kill is for a master that hangs.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._postfix("stop", timeout=timeout)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        if _alive(pid):
            raise PostfixError(f"the Postfix master (pid {pid}) for {self.root} did not stop")

    # Configuration -----------------------------------------------------------------------------------

    def _write_config(self) -> None:
        nobody = pwd.getpwnam(_DELIVERY_USER)
        self.root.chmod(0o755)
        # The queue's subdirectories and the data directory are Postfix's to make, with its owners.
        for directory in (self.config_dir, self.queue_dir):
            directory.mkdir(exist_ok=True)
        # Made up front, so a test can look into an empty mailbox before anything arrived.
        for name in MAILDIRS:
            for part in ("", "cur", "new", "tmp"):
                path = self.root / name / part
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
                path.chmod(0o700)
        transport = [f"{domain} discard:" for domain in DISCARD_DOMAINS]
        # Not `error:`/`retry:`: smtpd refuses recipients routed to those at RCPT time. These reach
        # a delivery agent first, as mail for a mailbox server behind a relay does.
        transport += ["unknown.test virtual:", f"deferred.test lmtp:unix:{self.root / 'no-such-lmtp-server'}"]
        (self.config_dir / "transport").write_text("\n".join(transport) + "\n")
        mailboxes = [
            "@deliver.test deliver/",
            "bounces@bounces.test bounces/",
            f"postmaster@{HOSTNAME} postmaster/",
        ]
        (self.config_dir / "mailboxes").write_text("\n".join(mailboxes) + "\n")
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(listen=f"{HOST}:{self.port}"))
        (self.config_dir / "main.cf").write_text(self._main_cf(nobody.pw_uid, nobody.pw_gid))

    def _main_cf(self, uid: int, gid: int) -> str:
        etc = self.config_dir
        lifetime = f"{QUEUE_LIFETIME_SECONDS}s"
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.root / "data"),
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.root),
            "syslog_name": f"postfix-{self.port}",
            "myhostname": HOSTNAME,
            "mydomain": HOSTNAME,
            "myorigin": HOSTNAME,
            # Nothing is local: the test domains below are virtual mailboxes, discards or errors.
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "default_transport": "error:5.4.4 this test MTA relays nowhere",
            "relay_transport": "error:5.4.4 this test MTA relays nowhere",
            "transport_maps": f"texthash:{etc / 'transport'}",
            "virtual_mailbox_domains": f"deliver.test, bounces.test, reject.test, {HOSTNAME}",
            "virtual_mailbox_base": str(self.root),
            "virtual_mailbox_maps": f"texthash:{etc / 'mailboxes'}",
            "virtual_uid_maps": f"static:{uid}",
            "virtual_gid_maps": f"static:{gid}",
            "recipient_delimiter": "+",
            "notify_classes": "resource, software",
            "soft_bounce": "no",
            # Short enough that a deferred message is retried and given up on while a test waits. Not
            # shorter: qmgr takes a deferred file up to 1 s early, and one still locked by the agent that
            # just deferred it is "skipped, still being delivered" and left alone for a whole minute.
            "queue_run_delay": "1s",
            "minimal_backoff_time": f"{BACKOFF_SECONDS}s",
            "maximal_backoff_time": f"{BACKOFF_SECONDS}s",
            "maximal_queue_lifetime": lifetime,
            "bounce_queue_lifetime": lifetime,
            "delay_warning_time": "0",
            "biff": "no",
        }
        return "".join(f"{key} = {value}\n" for key, value in settings.items())

    # What happened -----------------------------------------------------------------------------------

    def maildir(self, name: str) -> Path:
        """The Maildir `deliver`, `bounces` or `postmaster` (see the module docstring)."""
        if name not in MAILDIRS:
            raise ValueError(f"no Maildir {name!r}; there are {', '.join(MAILDIRS)}")
        return self.root / name

    def messages(self, name: str) -> list[bytes]:
        """Every message in a Maildir exactly as Postfix stored it, oldest first."""
        directory = self.maildir(name)
        files = [p for part in ("new", "cur") for p in (directory / part).iterdir() if p.is_file()]
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in files]

    def wait_for_messages(self, name: str, count: int, timeout: float = 30.0) -> list[bytes]:
        """The Maildir's messages once there are at least `count`; the log tail is in the error if not."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(name)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(found)} of {count} message(s) in Maildir {name!r} after {timeout:g}s;\n"
                    + self._log_tail()
                )
            time.sleep(0.1)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, lines: int = 30) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return "Postfix log:\n" + "\n".join(tail) if tail else "(the Postfix log is empty)"

    def accepted_count(self) -> int:
        """How many messages Postfix took over SMTP and queued, whatever became of them after.

        A message counts once smtpd has given it a queue id (`client=`) and the queue manager has picked
        it up (`from=`), which happens only after the final "." was answered with 250; Postfix's own
        DSNs never pass through smtpd and are not counted. Log lines reach the file a moment after the
        SMTP reply, so a caller that just sent should use `wait_for_accepted`.
        """
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(self._log_offset)
                chunk = fh.read()
        except FileNotFoundError:
            return self._accepted
        self._log_offset += len(chunk)
        lines = (self._log_partial + chunk).split(b"\n")
        self._log_partial = lines.pop()
        for line in lines:
            match = _LOG_LINE.search(line)
            if match is None:
                continue
            daemon, queue_id, text = match["daemon"], match["queue_id"], match["text"]
            if daemon == b"smtpd" and text.startswith(b"client="):
                self._received.add(queue_id)
            elif daemon == b"qmgr" and text.startswith(b"from=<") and queue_id in self._received:
                # Removed once counted: a deferred message is picked up again, and short queue ids
                # come back for new messages once the old file is gone.
                self._received.discard(queue_id)
                self._accepted += 1
        return self._accepted

    def wait_for_accepted(self, count: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while (accepted := self.accepted_count()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Postfix logged {accepted} of {count} accepted messages in {timeout:g}s")
            time.sleep(0.05)
        return accepted

    def queued(self) -> int:
        """Messages still in Postfix's queues: 0 once everything accepted has been delivered or bounced."""
        return sum(
            1
            for queue in ("maildrop", "incoming", "active", "deferred", "hold")
            for _, _, files in os.walk(self.queue_dir / queue)
            for _ in files
        )


def _reserve_port(port: int | None) -> socket.socket:
    """A socket bound to the port (a free one if None) that Postfix can share and nobody else can take.

    Bound without SO_REUSEPORT, so the bind fails if anyone holds the port, then given it, so Postfix's
    own SO_REUSEPORT listener may join; it never listens, so every connection goes to Postfix.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port or 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError as error:
        sock.close()
        raise PostfixError(f"cannot have port {port} on {HOST} for Postfix: {error}") from None
    return sock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_reachable(root: Path) -> None:
    """Refuse a directory the unprivileged delivery agent could not reach, with the reason, up front.

    Otherwise every delivery would be deferred with "permission denied" in the log and the test would
    only see a Maildir that stays empty.
    """
    for directory in root.parents:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise PostfixError(
                f"{directory} is not searchable by other users, so Postfix's delivery agent (running as "
                f"{_DELIVERY_USER}) cannot reach {root}; start() without a directory makes a reachable one"
            )
