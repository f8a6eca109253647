"""The IMAP reader against a real Dovecot: a private instance on a loopback port, configured from scratch."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from digest.bounces.mailbox import Disposition, ImapLocation, ImapMailbox, MailboxError, parse_location
from digest.bounces.processor import Action, process_bounces
from digest.bounces.verp import return_path
from digest.models import DigestStatus, SubscriberStatus
from digest.services import Services
from tests.support.env import free_port
from tests.unit.bounces import samples
from tests.unit.bounces.test_processor import add_digest, add_reader, digest_state, subscriber_state

DOVECOT = Path("/usr/sbin/dovecot")
USER, PASSWORD = "bounces", "imap-test-password"

pytestmark = pytest.mark.integration


@dataclass
class Dovecot:
    port: int

    def url(self, folder: str = "INBOX", password: str = PASSWORD) -> str:
        return f"imap://{USER}:{password}@127.0.0.1:{self.port}/{folder}"

    def client(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, data: bytes, folder: str = "INBOX") -> None:
        imap = self.client()
        try:
            status, _ = imap.append(f'"{folder}"', None, None, data.replace(b"\n", b"\r\n"))
            assert status == "OK"
        finally:
            imap.logout()

    def folder(self, folder: str) -> list[tuple[bytes, bytes]]:
        """(flags, Subject header) of each message in the folder."""
        imap = self.client()
        try:
            status, exists = imap.select(f'"{folder}"', readonly=True)
            if status != "OK" or exists[0] == b"0":
                return []
            _, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            found = []
            for item in data:
                if isinstance(item, tuple):
                    found.append((item[0], item[1].strip()))
            return found
        finally:
            imap.logout()


def _config(root: Path, port: int) -> str:
    """Everything Dovecot needs and nothing from /etc/dovecot: plain-text logins on loopback, one user."""
    if os.geteuid() == 0:
        internal, login = "dovecot", "dovenull"
        mail_user = pwd.getpwnam("dovecot")
    else:
        mail_user = pwd.getpwuid(os.geteuid())
        internal = login = mail_user.pw_name
    home = root / "home"
    home.mkdir()
    if os.geteuid() == 0:
        os.chown(home, mail_user.pw_uid, mail_user.pw_gid)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::\n", encoding="ascii")
    return f"""\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {mail_user.pw_uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={home}/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed at /usr/sbin/dovecot (Debian: apt-get install dovecot-imapd)")
    # Not under pytest's tmp_path: Dovecot's unprivileged processes must be able to reach the folder.
    root = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
    root.chmod(0o755)
    port = free_port()
    (root / "dovecot.conf").write_text(_config(root, port), encoding="ascii")
    process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"Dovecot did not start on 127.0.0.1:{port}: {stderr} {log}")
                time.sleep(0.1)
        yield Dovecot(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def test_reports_are_read_over_imap_acted_on_and_moved_out_of_the_folder(
    services: Services, dovecot: Dovecot
) -> None:
    reader = add_reader(services, "gone@example.net")
    digest_id, message_id = add_digest(services, reader)
    verp = return_path(services.settings, digest_id)
    dovecot.append(samples.postfix_hard(verp, "gone@example.net", message_id))
    dovecot.append(samples.vacation_reply(verp))
    box = replace(services, settings=replace(services.settings, bounce_mailbox=dovecot.url()))

    run = process_bounces(box)

    assert [(o.kind.value if o.kind else None, o.action) for o in run.outcomes] == [
        ("hard", Action.SUPPRESSED),
        ("unrelated", Action.LEFT_ALONE),
    ]
    assert run.mailbox == f"imap://{USER}@127.0.0.1:{dovecot.port}/INBOX"
    assert digest_state(services, digest_id)[0] is DigestStatus.BOUNCED
    assert subscriber_state(services, reader).status is SubscriberStatus.BOUNCED
    assert dovecot.folder("INBOX") == []
    ((processed_flags, processed_subject),) = dovecot.folder("Processed")
    assert b"\\Seen" in processed_flags and b"Undelivered Mail" in processed_subject
    ((unhandled_flags, unhandled_subject),) = dovecot.folder("Unhandled")
    assert b"\\Seen" not in unhandled_flags and b"Out of office" in unhandled_subject
    assert process_bounces(box).outcomes == []


@pytest.mark.parametrize("uidplus", [True, False])
def test_servers_without_move_get_copy_delete_and_expunge(dovecot: Dovecot, uidplus: bool) -> None:
    dovecot.append(samples.vacation_reply("bounces+1abc@example.org"))
    dovecot.append(samples.GARBAGE)
    location = parse_location(dovecot.url() + "?processed=Done&unhandled=Look")
    assert isinstance(location, ImapLocation)
    box = ImapMailbox(location)
    try:
        assert box.can_move and box.has_uidplus  # what Dovecot offers; pretend it does not
        box.can_move, box.has_uidplus = False, uidplus
        first, second = box.waiting()
        assert box.read(first) is not None
        box.file(first, Disposition.PROCESSED)
        box.file(second, Disposition.UNHANDLED)
        assert box.waiting() == []
    finally:
        box.close()
    assert [b"\\Seen" in flags for flags, _ in dovecot.folder("Done")] == [True]
    assert len(dovecot.folder("Look")) == 1 and dovecot.folder("INBOX") == []


def test_a_mailbox_that_cannot_be_opened_is_an_error_naming_it_without_the_password(
    services: Services, dovecot: Dovecot
) -> None:
    # The wrong password last: Dovecot makes the next logins from the same address wait after a failure.
    for url, problem in (
        (dovecot.url(folder="Nowhere"), "cannot open the folder"),
        (f"imap://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/INBOX", "cannot connect"),
        (dovecot.url(password="wrong-password"), "cannot open"),
    ):
        box = replace(services, settings=replace(services.settings, bounce_mailbox=url))
        with pytest.raises(MailboxError) as raised:
            process_bounces(box)
        message = str(raised.value)
        assert problem in message and f"imap://{USER}@127.0.0.1:" in message
        assert PASSWORD not in message and "wrong-password" not in message
