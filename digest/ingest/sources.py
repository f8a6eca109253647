"""Where listings come from: configured sources, each fetched on its own interval, every fetch recorded.

A fetch downloads first and stores after, in one transaction with its `Fetch` record and the source's
HTTP validators, so a batch is stored whole or not at all. A fetch that fails is still recorded, with
the error naming the source and what went wrong, and never takes the scheduler down with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from digest.db import transaction
from digest.ingest.downloads import (
    Download,
    download_arxiv_api,
    download_arxiv_rss,
    download_hf_daily,
)
from digest.ingest.fetching import FetchError
from digest.ingest.files import IngestFileError, ingest_paths
from digest.ingest.formats import ParseResult, Rejected
from digest.ingest.parsers import FeedFormatError
from digest.ingest.store import Incoming, StoreCounts, identify, store_batch
from digest.models import Fetch, Listing, Source, WatchedFile
from digest.services import Services

log = logging.getLogger(__name__)

WATCHED_SUFFIXES = (".jsonl", ".ndjson", ".txt")
STORE_BATCH = 500
PROBLEMS_KEPT = 20


@dataclass(frozen=True)
class KindDefaults:
    interval_minutes: int
    quiet_days: int
    description: str


KINDS: dict[str, KindDefaults] = {
    "arxiv_api": KindDefaults(
        360, 2, "arXiv API query by --category and/or --query (paged, 3 s between requests)"
    ),
    "arxiv_rss": KindDefaults(60, 2, "arXiv announcement feed for each --category"),
    "hf_daily": KindDefaults(120, 3, "Hugging Face daily papers (JSON, with upvotes)"),
    "directory": KindDefaults(
        15, 0, "a --path folder: each new or changed .jsonl/.txt file is ingested once"
    ),
}


class SourceError(ValueError):
    """A source's configuration is unusable; the message names the source and the setting."""


@dataclass
class FetchOutcome:
    source: str
    http_status: int | None = None
    not_modified: bool = False
    seen: int = 0
    counts: StoreCounts = field(default_factory=StoreCounts)
    rejected: int = 0
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    retry_after: float | None = None

    def summary(self) -> str:
        if self.error and not self.seen:
            return f"{self.source}: failed: {self.error}"
        if self.not_modified:
            return f"{self.source}: unchanged since the last fetch (HTTP 304)"
        c = self.counts
        old_news = (
            f", {c.skipped_replacements} new versions of papers never stored"
            if c.skipped_replacements
            else ""
        )
        stored = (
            f"{self.source}: {self.seen} seen, {c.new} new, {c.updated} updated, {c.duplicate} duplicate, "
            f"{self.rejected} rejected{old_news}"
        )
        return f"{stored}; but failed: {self.error}" if self.error else stored


# Configuration ------------------------------------------------------------------------------------


def add_source(  # noqa: C901, PLR0913 - one check per source option, each naming the option it refuses
    session: Session,
    name: str,
    kind: str,
    *,
    categories: Sequence[str] = (),
    query: str | None = None,
    url: str | None = None,
    path: str | None = None,
    page_size: int = 100,
    max_pages: int = 3,
    interval_minutes: int | None = None,
    quiet_days: int | None = None,
) -> Source:
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise SourceError(f"source name {name!r}: use 1-100 characters without spaces")
    if kind not in KINDS:
        raise SourceError(f"source {name}: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if session.scalar(select(Source.id).where(Source.name == name)) is not None:
        raise SourceError(f"source {name} already exists; remove it first to change it")
    config: dict[str, Any] = {}
    if url:
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"source {name}: --url must start with http:// or https://, got {url!r}")
        config["url"] = url
    if kind == "arxiv_api":
        if not categories and not query:
            raise SourceError(f"source {name}: an arxiv_api source needs --category or --query")
        config |= {
            "categories": list(categories),
            "query": query,
            "page_size": page_size,
            "max_pages": max_pages,
        }
    elif kind == "arxiv_rss":
        if not categories:
            raise SourceError(f"source {name}: an arxiv_rss source needs at least one --category")
        config["categories"] = list(categories)
    elif kind == "directory":
        if not path:
            raise SourceError(f"source {name}: a directory source needs --path")
        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise SourceError(f"source {name}: --path {folder} is not a folder")
        config["path"] = str(folder)
    defaults = KINDS[kind]
    interval = interval_minutes if interval_minutes is not None else defaults.interval_minutes
    if interval < 1:
        raise SourceError(f"source {name}: --every must be at least 1 minute")
    source = Source(
        name=name,
        kind=kind,
        config=config,
        interval_minutes=interval,
        quiet_days=quiet_days if quiet_days is not None else defaults.quiet_days,
        enabled=True,
        http_cache={},
        next_fetch_at=None,
    )
    session.add(source)
    session.flush()
    return source


def remove_source(session: Session, name: str) -> bool:
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:
        return False
    session.delete(source)
    session.flush()
    return True


def get_source(session: Session, name: str) -> Source:
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:
        known = ", ".join(session.scalars(select(Source.name).order_by(Source.name))) or "none yet"
        raise SourceError(f"no source named {name!r} (configured: {known})")
    return source


# Scheduling ---------------------------------------------------------------------------------------


def claim_due_sources(services: Services, now: datetime | None = None) -> list[int]:
    """Claim each due source for one fetch with a compare-and-set, so overlapping ticks fetch it once."""
    now = now or datetime.now(UTC)
    claimed = []
    with services.sessions() as session:
        due = session.execute(
            select(Source.id, Source.next_fetch_at, Source.interval_minutes).where(
                Source.enabled.is_(True), or_(Source.next_fetch_at.is_(None), Source.next_fetch_at <= now)
            )
        ).all()
    for source_id, next_fetch_at, interval in due:
        with transaction(services.sessions) as session:
            condition = (
                Source.next_fetch_at.is_(None)
                if next_fetch_at is None
                else Source.next_fetch_at == next_fetch_at
            )
            result = session.execute(
                update(Source)
                .where(Source.id == source_id, condition)
                .values(next_fetch_at=now + timedelta(minutes=interval))
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(source_id)
    return claimed


# Fetching -----------------------------------------------------------------------------------------


def _store(
    session: Session, source: Source, items: list[ParseResult], now: datetime, outcome: FetchOutcome
) -> None:
    batch: list[Incoming] = []
    for item in items:
        outcome.seen += 1
        incoming = item if isinstance(item, Rejected) else identify(item)
        if isinstance(incoming, Rejected):
            outcome.rejected += 1
            if len(outcome.problems) < PROBLEMS_KEPT:
                named = incoming.message.startswith("item ")
                outcome.problems.append(
                    incoming.message if named else f"item {incoming.line}: {incoming.message}"
                )
            continue
        batch.append(incoming)
        if len(batch) >= STORE_BATCH:
            outcome.counts.add(store_batch(session, batch, source.name, now))
            batch = []
    if batch:
        outcome.counts.add(store_batch(session, batch, source.name, now))


def _record(session: Session, source_id: int, started: datetime, outcome: FetchOutcome) -> None:
    session.add(
        Fetch(
            source_id=source_id,
            started_at=started,
            finished_at=datetime.now(UTC),
            http_status=outcome.http_status,
            not_modified=outcome.not_modified,
            seen=outcome.seen,
            new=outcome.counts.new,
            updated=outcome.counts.updated,
            rejected=outcome.rejected,
            error=outcome.error,
            problems=outcome.problems,
        )
    )


def _download(services: Services, source: Source, known: Callable[[list[str]], int]) -> Download:
    if source.kind == "arxiv_api":
        return download_arxiv_api(services.http, source, known)
    if source.kind == "arxiv_rss":
        return download_arxiv_rss(services.http, source)
    if source.kind == "hf_daily":
        return download_hf_daily(services.http, source)
    raise SourceError(f"source {source.name}: unknown kind {source.kind!r}")


def fetch_source(services: Services, source_id: int, *, now: datetime | None = None) -> FetchOutcome:
    """Fetch one source now, store what is new, and record the fetch, whatever happens."""
    started = datetime.now(UTC)
    now = now or started
    with services.sessions() as session:
        source = session.get(Source, source_id)
        if source is None:
            raise SourceError(f"no source with id {source_id}")
        session.expunge(source)
    outcome = FetchOutcome(source=source.name)

    if source.kind == "directory":
        return _fetch_directory(services, source, started, now, outcome)

    def known(ids: list[str]) -> int:
        if not ids:
            return 0
        with services.sessions() as lookup:
            return len(lookup.scalars(select(Listing.id).where(Listing.arxiv_id.in_(ids))).all())

    try:
        download = _download(services, source, known)
        outcome.http_status, outcome.not_modified = download.http_status, download.not_modified
        if download.failures:  # some categories failed: the source shows as failing, the rest is stored
            outcome.error = "; ".join(download.failures)
        with transaction(services.sessions) as session:
            _store(session, source, download.items, now, outcome)
            session.execute(update(Source).where(Source.id == source.id).values(http_cache=download.cache))
            _record(session, source.id, started, outcome)
        return outcome
    except FetchError as exc:
        outcome.http_status, outcome.error, outcome.retry_after = exc.status, str(exc), exc.retry_after
    except (FeedFormatError, SourceError) as exc:
        outcome.error = str(exc)
        outcome.http_status = getattr(exc, "status", None)
    except Exception as exc:  # a bug or a database failure: recorded, so the source shows as failing
        log.exception("fetching source %s failed", source.name)
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.counts, outcome.seen, outcome.rejected = StoreCounts(), 0, 0
    with transaction(services.sessions) as session:
        _record(session, source.id, started, outcome)
        if outcome.retry_after:
            session.execute(
                update(Source)
                .where(Source.id == source.id)
                .values(next_fetch_at=now + timedelta(seconds=outcome.retry_after))
            )
    return outcome


def _fetch_directory(
    services: Services, source: Source, started: datetime, now: datetime, outcome: FetchOutcome
) -> FetchOutcome:
    """Ingest each file once; a file that changes (grows, is rewritten) is ingested again, which dedup makes
    harmless. A crash between a file's ingest and its watch record only means it is read again."""
    folder = Path(source.config["path"])
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in WATCHED_SUFFIXES)
    except OSError as exc:
        outcome.error = f"cannot list {folder}: {exc.strerror or exc}"
        files = []
    with services.sessions() as session:
        watched = {
            w.path: (w.size, w.mtime_ns)
            for w in session.scalars(select(WatchedFile).where(WatchedFile.source_id == source.id))
        }
    for path in files:
        info = path.stat()
        if watched.get(str(path)) == (info.st_size, info.st_mtime_ns):
            continue
        try:
            report = ingest_paths(services.sessions, [path], now=now)
        except IngestFileError as exc:
            outcome.problems.append(str(exc))
            outcome.error = outcome.error or f"{len(outcome.problems)} file(s) could not be read"
            continue
        outcome.seen += report.new + report.updated + report.duplicate + report.rejected
        outcome.counts.add(StoreCounts(report.new, report.updated, report.duplicate))
        outcome.rejected += report.rejected
        outcome.problems.extend(str(e) for e in report.errors[: PROBLEMS_KEPT - len(outcome.problems)])
        with transaction(services.sessions) as session:
            existing = session.scalar(
                select(WatchedFile).where(WatchedFile.source_id == source.id, WatchedFile.path == str(path))
            )
            if existing is None:
                session.add(
                    WatchedFile(
                        source_id=source.id, path=str(path), size=info.st_size, mtime_ns=info.st_mtime_ns
                    )
                )
            else:
                existing.size, existing.mtime_ns, existing.ingested_at = info.st_size, info.st_mtime_ns, now
    with transaction(services.sessions) as session:
        _record(session, source.id, started, outcome)
    return outcome
