"""The mailbox the bounces land in, named by DIGEST_BOUNCE_MAILBOX, read by `digest bounces` and the beat.

- `maildir:/absolute/path`: a Maildir the mail server delivers to (Postfix's `home_mailbox = Maildir/`,
  Dovecot's LDA). Messages in `new/` and `cur/` are read. One dealt with is moved to the `.processed`
  sub-Maildir, marked seen; one left alone to `.unhandled`, under `new/` so a mail client shows it as
  unread to the human who should look at it. Both are Maildir++ folders, so an IMAP server on the same
  Maildir shows them as folders. A move is a rename() within one filesystem: a run that stops half-way
  neither loses a message nor files it twice.
- `imap://user:password@host[:port]/FOLDER`, `imap+starttls://...` or `imaps://...` (TLS from the start,
  port 993): FOLDER (default INBOX) is read. A message dealt with is flagged \\Seen and moved to the
  folder `Processed`, one left alone moved unflagged to `Unhandled`; `?processed=NAME&unhandled=NAME`
  chooses other folders, which are created on first use. Moving rather than only flagging keeps FOLDER
  down to what is new, so each run reads only that, and a human who opens the account sees what needs
  them in one place. MOVE (RFC 6851) is used where the server has it, else COPY, \\Deleted and EXPUNGE;
  without UIDPLUS that EXPUNGE also removes other messages flagged \\Deleted in FOLDER, so give the
  bounces an account or folder of their own. User name and password are percent-decoded (`%40` for @).

A message that could not be dealt with this time (its digest still being sent, or an error) stays where
it is and is read again by the next run.
"""

from __future__ import annotations

import imaplib
import os
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

USAGE = (
    "must be maildir:/absolute/path, imap://user:password@host[:port]/FOLDER, "
    "imap+starttls://... or imaps://..."
)
IMAP_SCHEMES = {"imap": 143, "imap+starttls": 143, "imaps": 993}
IMAP_TIMEOUT_SECONDS = 60.0


class MailboxError(Exception):
    """The mailbox cannot be opened or listed; the message names it, without its password."""


class Disposition(StrEnum):
    PROCESSED = "processed"
    UNHANDLED = "unhandled"
    # Read again by the next run.
    KEEP = "kept"


@dataclass(frozen=True)
class MaildirLocation:
    path: Path

    def __str__(self) -> str:
        return f"maildir:{self.path}"


@dataclass(frozen=True)
class ImapLocation:
    scheme: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    unhandled_folder: str = "Unhandled"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


Location = MaildirLocation | ImapLocation


def parse_location(value: str) -> Location:
    """Raises ValueError saying what is wrong (never quoting the password)."""
    scheme, colon, rest = value.partition(":")
    if not colon:
        raise ValueError(USAGE)
    if scheme == "maildir":
        path = rest[2:] if rest.startswith("///") else rest
        if not Path(path).is_absolute():
            raise ValueError(f"needs an absolute path after maildir: ({USAGE})")
        return MaildirLocation(Path(path))
    if scheme not in IMAP_SCHEMES:
        raise ValueError(USAGE)
    return _imap_location(value)


def _imap_location(value: str) -> ImapLocation:
    parts = urlsplit(value)
    try:
        port = parts.port or IMAP_SCHEMES[parts.scheme]
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"names no host ({USAGE})")
    if not parts.username or parts.password is None:
        raise ValueError(f"needs a user name and a password ({USAGE})")
    folders = {"folder": unquote(parts.path.lstrip("/")) or "INBOX"}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key not in ("processed", "unhandled") or len(values) != 1:
            raise ValueError("takes only ?processed=FOLDER&unhandled=FOLDER after the folder")
        folders[key] = values[0]
    for name in folders.values():
        # Non-ASCII names would need IMAP's modified UTF-7; nobody needs them for a bounce account.
        if not name or not name.isascii() or not name.isprintable() or '"' in name or "\\" in name:
            raise ValueError(f"has a folder name IMAP cannot take as it is: {name!r}")
    if len(set(folders.values())) != len(folders):
        raise ValueError("needs the folder read and the processed and unhandled folders to differ")
    return ImapLocation(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password),
        folder=folders["folder"],
        processed_folder=folders.get("processed", "Processed"),
        unhandled_folder=folders.get("unhandled", "Unhandled"),
    )


def redacted(value: str) -> str:
    """The setting as it can be shown in a message or a log: any password replaced by ***."""
    parts = urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


class Mailbox(Protocol):
    @property
    def name(self) -> str:
        """How messages and logs name the mailbox, without its password."""
        ...

    def waiting(self) -> list[str]:
        """The messages waiting, oldest first as far as the mailbox can tell; raises MailboxError."""
        ...

    def read(self, key: str) -> bytes | None:
        """The message's bytes; None when it has gone since `waiting` (another run filed it)."""
        ...

    def file(self, key: str, disposition: Disposition) -> None: ...


@contextmanager
def open_mailbox(location: Location | str) -> Iterator[Mailbox]:
    """Raises MailboxError when the mailbox cannot be reached or opened."""
    if isinstance(location, str):
        try:
            location = parse_location(location)
        except ValueError as exc:
            raise MailboxError(f"DIGEST_BOUNCE_MAILBOX {exc}") from None
    if isinstance(location, MaildirLocation):
        yield Maildir(location.path)
        return
    box = ImapMailbox(location)
    try:
        yield box
    finally:
        box.close()


class Maildir:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not all((path / sub).is_dir() for sub in ("new", "cur")):
            raise MailboxError(
                f"{self.name} is not a Maildir (no new/ and cur/ folders there; "
                "the mail server makes them on its first delivery, or create new/, cur/ and tmp/)"
            )

    @property
    def name(self) -> str:
        return f"maildir:{self.path}"

    def waiting(self) -> list[str]:
        keys = []
        for sub in ("new", "cur"):
            try:
                names = os.listdir(self.path / sub)
            except OSError as exc:
                raise MailboxError(f"cannot list {self.name}: {exc}") from None
            # Delivery names start with the time of delivery, so sorting them reads the oldest first.
            keys += [f"{sub}/{name}" for name in sorted(names) if not name.startswith(".")]
        return keys

    def read(self, key: str) -> bytes | None:
        try:
            return (self.path / key).read_bytes()
        except FileNotFoundError:
            return None

    def file(self, key: str, disposition: Disposition) -> None:
        if disposition is Disposition.KEEP:
            return
        source = self.path / key
        # The part after ":" is the info (flags); the part before it names the message for good.
        unique = source.name.split(":", 1)[0]
        if disposition is Disposition.PROCESSED:
            target = self._folder(".processed") / "cur" / f"{unique}:2,S"
        else:
            target = self._folder(".unhandled") / "new" / unique
        try:
            os.rename(source, target)
        except FileNotFoundError:
            if not target.exists():
                raise

    def _folder(self, name: str) -> Path:
        folder = self.path / name
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        (folder / "maildirfolder").touch(exist_ok=True)
        return folder


def _quoted(name: str) -> str:
    return f'"{name}"'


class ImapMailbox:
    def __init__(self, location: ImapLocation, timeout: float = IMAP_TIMEOUT_SECONDS) -> None:
        self.location = location
        self._created: set[str] = set()
        try:
            if location.scheme == "imaps":
                context = ssl.create_default_context()
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    location.host, location.port, ssl_context=context, timeout=timeout
                )
            else:
                self.imap = imaplib.IMAP4(location.host, location.port, timeout=timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"cannot connect to {self.name}: {exc}") from None
        try:
            if location.scheme == "imap+starttls":
                self.imap.starttls(ssl.create_default_context())
            self.imap.login(location.user, location.password)
            status, data = self.imap.select(_quoted(location.folder))
            if status != "OK":
                raise MailboxError(f"cannot open the folder of {self.name}: {_text(data)}")
            # Asked again after the login: servers list MOVE and UIDPLUS only to a logged-in client.
            status, data = self.imap.capability()
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            raise MailboxError(f"cannot open {self.name}: {exc}") from None
        except MailboxError:
            self.close()
            raise
        capabilities = set(_text(data).upper().split()) if status == "OK" else set()
        self.can_move = "MOVE" in capabilities
        self.has_uidplus = "UIDPLUS" in capabilities

    @property
    def name(self) -> str:
        return str(self.location)

    def waiting(self) -> list[str]:
        try:
            status, data = self.imap.uid("SEARCH", "UNDELETED")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"cannot list {self.name}: {exc}") from None
        if status != "OK":
            raise MailboxError(f"cannot list {self.name}: {_text(data)}")
        return [uid.decode("ascii") for chunk in data if isinstance(chunk, bytes) for uid in chunk.split()]

    def read(self, key: str) -> bytes | None:
        status, data = self.imap.uid("FETCH", key, "(BODY.PEEK[])")
        self._check(status, data, f"fetch message {key}")
        for item in data:
            if isinstance(item, tuple) and len(item) > 1 and isinstance(item[1], bytes):
                return item[1]
        return None

    def file(self, key: str, disposition: Disposition) -> None:
        if disposition is Disposition.KEEP:
            return
        processed = disposition is Disposition.PROCESSED
        folder = self.location.processed_folder if processed else self.location.unhandled_folder
        self._create(folder)
        if processed:
            self._check(*self.imap.uid("STORE", key, "+FLAGS.SILENT", r"(\Seen)"), f"flag message {key}")
        if self.can_move:
            self._check(*self.imap.uid("MOVE", key, _quoted(folder)), f"move message {key}")
            return
        self._check(*self.imap.uid("COPY", key, _quoted(folder)), f"copy message {key}")
        self._check(*self.imap.uid("STORE", key, "+FLAGS.SILENT", r"(\Deleted)"), f"delete message {key}")
        if self.has_uidplus:
            self._check(*self.imap.uid("EXPUNGE", key), f"expunge message {key}")
        else:
            self._check(*self.imap.expunge(), "expunge")

    def close(self) -> None:
        for step in ("close", "logout"):
            with suppress(OSError, imaplib.IMAP4.error, AttributeError):
                getattr(self.imap, step)()

    def _create(self, folder: str) -> None:
        if folder in self._created:
            return
        # Fails harmlessly when the folder exists; subscribing makes it show in mail clients.
        self.imap.create(_quoted(folder))
        self.imap.subscribe(_quoted(folder))
        self._created.add(folder)

    def _check(self, status: str, data: Sequence[object], what: str) -> None:
        if status != "OK":
            raise OSError(f"{self.name}: cannot {what}: {_text(data)}")


def _text(data: Sequence[object]) -> str:
    return " ".join(d.decode("utf-8", "replace") if isinstance(d, bytes) else str(d) for d in data)
