"""The bounce mailbox setting and the Maildir reader, on a real Maildir in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.bounces.mailbox import (
    Disposition,
    ImapLocation,
    MailboxError,
    Maildir,
    MaildirLocation,
    open_mailbox,
    parse_location,
)
from digest.config import ConfigError
from tests.support.env import make_settings


def make_maildir(root: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True)
    return root


def deliver(maildir: Path, name: str, data: bytes, sub: str = "new") -> Path:
    """As a delivery agent does: written in tmp/, then renamed into place."""
    temporary = maildir / "tmp" / name
    temporary.write_bytes(data)
    target = maildir / sub / name
    temporary.rename(target)
    return target


def test_new_and_cur_are_read_oldest_first_and_nothing_else(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "1795413700.M2P11Q1.relay", b"second")
    deliver(maildir, "1795413600.M1P10Q1.relay", b"first")
    deliver(maildir, "1795400000.M9P9Q9.relay:2,S", b"read by a human", sub="cur")
    (maildir / "tmp" / "1795413800.M3P12Q1.relay").write_bytes(b"still being written")
    (maildir / "new" / ".hidden").write_bytes(b"not a message")

    with open_mailbox(f"maildir:{maildir}") as box:
        assert box.name == f"maildir:{maildir}"
        keys = box.waiting()
        assert keys == [
            "new/1795413600.M1P10Q1.relay",
            "new/1795413700.M2P11Q1.relay",
            "cur/1795400000.M9P9Q9.relay:2,S",
        ]
        assert [box.read(k) for k in keys] == [b"first", b"second", b"read by a human"]


def test_a_handled_message_goes_to_processed_as_seen_and_the_rest_to_unhandled_as_new(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "100.M1.relay", b"a hard bounce")
    deliver(maildir, "200.M2.relay", b"a vacation reply")
    deliver(maildir, "300.M3.relay:2,S", b"seen already, unhandled", sub="cur")
    deliver(maildir, "400.M4.relay", b"its digest is still being sent")
    box = Maildir(maildir)

    box.file("new/100.M1.relay", Disposition.PROCESSED)
    box.file("new/200.M2.relay", Disposition.UNHANDLED)
    box.file("cur/300.M3.relay:2,S", Disposition.UNHANDLED)
    box.file("new/400.M4.relay", Disposition.KEEP)

    assert (maildir / ".processed" / "cur" / "100.M1.relay:2,S").read_bytes() == b"a hard bounce"
    assert (maildir / ".unhandled" / "new" / "200.M2.relay").read_bytes() == b"a vacation reply"
    assert (maildir / ".unhandled" / "new" / "300.M3.relay").read_bytes() == b"seen already, unhandled"
    # Maildir++ sub-folders, so an IMAP server on this Maildir shows them as folders.
    for folder in (".processed", ".unhandled"):
        assert all((maildir / folder / sub).is_dir() for sub in ("tmp", "new", "cur"))
        assert (maildir / folder / "maildirfolder").exists()
    # Only what waits for the next run is read again; the sub-folders are not read at all.
    assert box.waiting() == ["new/400.M4.relay"]


def test_a_message_another_run_filed_meanwhile_is_skipped_not_an_error(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "100.M1.relay", b"x")
    first, second = Maildir(maildir), Maildir(maildir)
    (key,) = second.waiting()
    first.file(key, Disposition.PROCESSED)
    assert second.read(key) is None
    second.file(key, Disposition.PROCESSED)  # already where it should be
    with pytest.raises(FileNotFoundError):
        second.file(key, Disposition.UNHANDLED)  # gone, and not to there


def test_a_missing_or_incomplete_maildir_cannot_be_read_and_says_which(tmp_path: Path) -> None:
    with pytest.raises(MailboxError, match=f"maildir:{tmp_path / 'nowhere'} is not a Maildir"):
        Maildir(tmp_path / "nowhere")
    (tmp_path / "half" / "new").mkdir(parents=True)
    with pytest.raises(MailboxError, match="no new/ and cur/"), open_mailbox(f"maildir:{tmp_path / 'half'}"):
        pass


def test_locations_are_read_with_their_defaults() -> None:
    assert parse_location("maildir:/var/mail/bounces") == MaildirLocation(Path("/var/mail/bounces"))
    assert parse_location("maildir:///var/mail/bounces") == MaildirLocation(Path("/var/mail/bounces"))
    plain = parse_location("imap://bounces:s3cret@127.0.0.1/")
    assert plain == ImapLocation("imap", "127.0.0.1", 143, "bounces", "s3cret", "INBOX")
    tls = parse_location("imaps://bounce%40example.org:p%2Fw%3Ad@mail.example.org/Bounces?processed=Done")
    assert isinstance(tls, ImapLocation)
    assert (tls.port, tls.user, tls.password, tls.folder) == (993, "bounce@example.org", "p/w:d", "Bounces")
    assert (tls.processed_folder, tls.unhandled_folder) == ("Done", "Unhandled")
    assert "p/w" not in repr(tls) and "p/w" not in str(tls)
    starttls = parse_location("imap+starttls://u:p@mail.example.org:1143/INBOX")
    assert isinstance(starttls, ImapLocation) and starttls.port == 1143


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("maildir:relative/path", "absolute path"),
        ("mbox:/var/mail/bounces", "must be maildir:"),
        ("/var/mail/bounces", "must be maildir:"),
        ("imap://host/INBOX", "user name and a password"),
        ("imap://user@host/INBOX", "user name and a password"),
        ("imaps://user:pw@:993/INBOX", "names no host"),
        ("imap://user:pw@host:99999/INBOX", "port"),
        ("imap://user:pw@host/INBOX?archive=Old", "only ?processed"),
        ("imap://user:pw@host/Posteingang%C3%BC", "folder name"),
        ("imap://user:pw@host/INBOX?processed=INBOX", "differ"),
    ],
)
def test_a_bad_mailbox_setting_names_the_variable_and_hides_the_password(
    tmp_path: Path, value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        make_settings(tmp_path, DIGEST_BOUNCE_MAILBOX=value)
    message = str(raised.value)
    assert message.startswith("DIGEST_BOUNCE_MAILBOX ") and problem in message
    assert ":pw@" not in message


def test_the_mailbox_setting_is_optional_and_kept_out_of_the_repr(tmp_path: Path) -> None:
    assert make_settings(tmp_path).bounce_mailbox is None
    settings = make_settings(
        tmp_path, DIGEST_BOUNCE_MAILBOX="imaps://u:hunter2-secret@mail.example.org/INBOX"
    )
    assert settings.bounce_mailbox == "imaps://u:hunter2-secret@mail.example.org/INBOX"
    assert "hunter2" not in repr(settings)
