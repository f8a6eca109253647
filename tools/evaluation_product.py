"""The product as an evaluated method: what `digest run` does, read back the way a reader reads it.

A fresh embedded data dir (SQLite, eager Celery tasks, the outbox) per replay. Each day the batch is
written as JSON Lines and stored by `ingest_paths`, `run_day` (the function behind `digest run`) ranks,
renders and sends, and each reader's email is read back from the outbox: the numbered items of its text
part, and their "More like this" / "Less like this" links. A vote decodes the link's signed token and goes
through `Readers.vote`, which is what the feedback page's form calls, so the retraining it queues runs too.
Nothing here ranks: if the product changes, this measures the change.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from digest.config import get_settings
from digest.db import transaction, upgrade
from digest.deliver.day import run_day
from digest.ingest.files import ingest_paths
from digest.models import Vote
from digest.services import Services
from digest.subscribers.subscriptions import subscribe
from tools.evaluation import SHOWN, Day, Reader, title_key

# The replay's calendar: day 1's batch arrives at 05:00 UTC on this date and `digest run` follows at 06:00.
FIRST_DAY = datetime(2026, 1, 5, 5, 0, tzinfo=UTC)
RUN_AFTER = timedelta(hours=1)

_ITEM = re.compile(r"^(\d+)\. (.+)$")
_LINK = re.compile(r"^\s+(More|Less) like this: (\S+)$")


class EmailFormatError(RuntimeError):
    """A sent email could not be read back as a digest: the template and this reader disagree."""


def reader_address(reader: Reader) -> str:
    return f"{reader.label_set}-{reader.persona}@readers.example".lower()


def read_digest_text(text: str) -> list[tuple[str, str, str]]:
    """(title, more link, less link) of each numbered paper of a digest's text part, in order, up to the
    trending section (which is not the reader's picks)."""
    items: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        if line.strip() == "Trending today" or line.startswith("--"):
            break
        if match := _ITEM.match(line):
            items.append((match.group(2).strip(), {}))
        elif (match := _LINK.match(line)) and items:
            items[-1][1][match.group(1)] = match.group(2)
    out = []
    for title, links in items:
        if set(links) != {"More", "Less"}:
            raise EmailFormatError(f"paper {title!r} has no More/Less links in the text part")
        out.append((title, links["More"], links["Less"]))
    return out


def _text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        raise EmailFormatError(f"email to {message['To']} has no text part")
    return str(part.get_content())


class ProductMethod:
    """ "ours": the production path end to end."""

    name = "ours"

    def __init__(self, env: dict[str, str] | None = None, first_day: datetime = FIRST_DAY) -> None:
        self.extra_env = env or {}
        self.first_day = first_day
        self.root: Path | None = None
        self.services: Services | None = None
        self.dispatcher: Any = None
        self.core: Any = None
        self.readers: dict[str, Reader] = {}
        self.links: dict[tuple[int, int], tuple[str, str]] = {}
        self.seen_emails: set[Path] = set()

    def start(self, readers: Sequence[Reader]) -> None:
        from digest.cli.common import celery_dispatcher
        from digest.limits import MemoryCounter, SubscribeLimits
        from digest.readers import Readers

        self.root = Path(tempfile.mkdtemp(prefix="digest-evaluate-"))
        settings = get_settings({"DIGEST_DATA_DIR": str(self.root), **self.extra_env})
        self.services = Services.build(settings)
        upgrade(self.services.engine)
        self.dispatcher = celery_dispatcher(self.services)
        self.core = Readers(self.services, self.dispatcher, SubscribeLimits(MemoryCounter()))
        with transaction(self.services.sessions) as session:
            for reader in readers:
                subscribe(session, reader_address(reader), reader.keywords, confirmed=True)
        self.readers = {reader_address(r): r for r in readers}

    def _services(self) -> Services:
        if self.services is None or self.root is None:
            raise RuntimeError("start() was not called")
        return self.services

    def show(self, day: Day, readers: Sequence[Reader]) -> dict[int, list[int]]:
        self.ingest(day)
        return self.run(day)

    def arrival(self, day: Day) -> datetime:
        return self.first_day + timedelta(days=day.date_offset)

    def ingest(self, day: Day) -> None:
        """The day's batch as JSON Lines, stored as `digest ingest` stores it."""
        services = self._services()
        assert self.root is not None
        batch = self.root / f"day-{day.number}.jsonl"
        with batch.open("w", encoding="utf-8") as out:
            for paper in day.batch:
                out.write(json.dumps({"title": paper.title, "abstract": paper.abstract}) + "\n")
        ingest_paths(services.sessions, [batch], now=self.arrival(day))

    def run(self, day: Day) -> dict[int, list[int]]:
        """`digest run --date D` for the day, then each reader's email read back."""
        arrived = self.arrival(day)
        run_day(self._services(), date_of(arrived), self.dispatcher, now=arrived + RUN_AFTER)
        return self._read_outbox(day)

    def _read_outbox(self, day: Day) -> dict[int, list[int]]:
        row_of = {title_key(p.title): row for row, p in enumerate(day.papers)}
        shown: dict[int, list[int]] = {}
        outbox = self._services().settings.outbox_dir
        for path in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
            if path in self.seen_emails:
                continue
            self.seen_emails.add(path)
            with path.open("rb") as fh:
                message = BytesParser(policy=policy.default).parse(fh)
            assert isinstance(message, EmailMessage)
            reader = self.readers.get(str(message["To"]).strip().lower())
            if reader is None:
                raise EmailFormatError(f"{path.name} is addressed to {message['To']}, who is not a reader")
            rows = []
            for title, more, less in read_digest_text(_text_part(message))[:SHOWN]:
                row = row_of.get(title_key(title))
                if row is None:
                    raise EmailFormatError(f"{path.name} lists {title!r}, which is not a paper of the replay")
                rows.append(row)
                self.links[(reader.index, row)] = (more, less)
            shown[reader.index] = rows
        return shown

    def vote(self, reader: Reader, row: int, more: bool) -> None:
        services = self._services()
        link = self.links[(reader.index, row)][0 if more else 1]
        feedback = services.links.read_feedback(link.rsplit("/", 1)[1])
        wanted = Vote.MORE if more else Vote.LESS
        if feedback.vote is not wanted:
            raise EmailFormatError(f"the {wanted.name} link of {link} carries a {feedback.vote.name} vote")
        self.core.vote(feedback.public_id, feedback.listing_id, feedback.vote)

    def finish(self) -> None:
        if self.services is not None:
            self.services.close()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        self.services = self.root = None
        self.links.clear()
        self.seen_emails.clear()


def date_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()
