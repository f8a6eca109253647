"""The ingest stage: reading listing files into the `listing` table, each paper stored once.

Files are streamed line by line and papers are checked against the database in chunks, so memory
stays flat however large a file is. A problem with one record is reported and skipped; a problem with
a file (missing, unreadable, not UTF-8) stops the run, and that file leaves nothing behind.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session, sessionmaker

from digest.db import transaction
from digest.ingest.formats import (
    ParseResult,
    Rejected,
    SourceLine,
    normalize_title,
    parse_json_lines,
    parse_listing_text,
)
from digest.ingest.store import Incoming, StoreCounts, identify, store_batch

__all__ = [
    "IngestFileError",
    "IngestReport",
    "RecordError",
    "ingest_paths",
    "normalize_title",
]

LOOKUP_CHUNK = 500
# Far above any valid record (a 50,000-character abstract written as JSON \u escapes is ~300 kB); a
# longer line is rejected without ever being held in memory whole.
MAX_LINE_BYTES = 4 * 1024 * 1024
PROGRESS_STEP_BYTES = 256 * 1024
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class RecordError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class IngestReport:
    new: int = 0
    updated: int = 0
    duplicate: int = 0
    rejected: int = 0
    errors: list[RecordError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class IngestFileError(Exception):
    """A file could not be ingested at all; nothing from it was stored.

    `report` holds what the files completed earlier in the same call stored, since those stay committed.
    """

    def __init__(self, path: str, reason: str, report: IngestReport | None = None) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason
        self.report = report if report is not None else IngestReport()

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def ingest_paths(
    sessions: sessionmaker[Session],
    paths: Sequence[Path],
    *,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Store the papers in `paths` that are not stored yet.

    Every path is checked before anything is written, so a mistyped name costs nothing. Each file is
    then ingested in its own transaction, in order: if one fails part-way (invalid UTF-8, an I/O error)
    its papers are rolled back and `IngestFileError` is raised, while the files before it stay
    committed (the exception's `report` says what they stored). Re-running is always safe, since a paper
    already stored counts as a duplicate.

    `now` is the `first_seen_at` of every paper this call stores; `progress` receives the bytes read
    since its previous call, so it can drive a bar sized to the files' total size.
    """
    seen_at = now if now is not None else datetime.now(UTC)
    if seen_at.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    for path in paths:
        _check_readable(path)

    report = IngestReport()
    for path in paths:
        try:
            _ingest_file(sessions, path, report, seen_at, progress)
        except IngestFileError as exc:
            exc.report = report
            raise
        report.files.append(str(path))
    return report


def _check_readable(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise IngestFileError(str(path), "no such file") from None
    except PermissionError:
        raise IngestFileError(str(path), "permission denied") from None
    except OSError as exc:
        raise IngestFileError(str(path), exc.strerror or str(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise IngestFileError(str(path), "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        # Reading a FIFO or a device could block forever or never end.
        raise IngestFileError(str(path), "is not a regular file")
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        raise IngestFileError(str(path), "permission denied") from None
    except OSError as exc:
        raise IngestFileError(str(path), exc.strerror or str(exc)) from None


class _ByteMeter:
    """Batches byte counts so a progress bar moves smoothly without a call per line."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self._progress = progress
        self._unreported = 0

    def consumed(self, count: int) -> None:
        self._unreported += count
        if self._unreported >= PROGRESS_STEP_BYTES:
            self.report()

    def report(self) -> None:
        if self._progress is not None and self._unreported:
            self._progress(self._unreported)
        self._unreported = 0


def _read_lines(stream: BinaryIO, path: Path, meter: _ByteMeter) -> Iterator[SourceLine]:
    number = 0
    offset = 0
    while True:
        chunk = stream.readline(MAX_LINE_BYTES)
        if not chunk:
            return
        number += 1
        line_start = offset
        offset += len(chunk)
        meter.consumed(len(chunk))
        if not chunk.endswith(b"\n") and len(chunk) == MAX_LINE_BYTES:
            offset += _skip_rest_of_line(stream, meter)
            yield SourceLine(number, "", too_long=True)
            continue
        if number == 1 and chunk.startswith(UTF8_BOM):
            chunk = chunk[len(UTF8_BOM) :]
            line_start += len(UTF8_BOM)
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IngestFileError(
                str(path), f"not valid UTF-8 at line {number} (byte offset {line_start + exc.start})"
            ) from None
        yield SourceLine(number, text.rstrip("\r\n"))


def _skip_rest_of_line(stream: BinaryIO, meter: _ByteMeter) -> int:
    skipped = 0
    while True:
        chunk = stream.readline(MAX_LINE_BYTES)
        skipped += len(chunk)
        meter.consumed(len(chunk))
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _parse(path: Path, lines: Iterator[SourceLine]) -> Iterator[ParseResult]:
    if path.suffix.lower() in JSON_LINES_SUFFIXES:
        return parse_json_lines(lines)
    leading_blank: list[SourceLine] = []
    for line in lines:
        if line.too_long or line.text.strip():
            restored = chain(leading_blank, [line], lines)
            opening = line.text.lstrip().lstrip("\ufeff")
            if not line.too_long and opening.startswith("{"):
                return parse_json_lines(restored)
            if not line.too_long and opening.startswith("<"):
                # A feed or an API page saved with another name: read as listing text it would store a
                # junk paper titled "</description>", or nothing at all without a word of warning.
                kind = (
                    "an XML feed or API page"
                    if opening.startswith(("<?xml", "<rss", "<feed", "<rdf"))
                    else ("XML or HTML")
                )
                raise IngestFileError(
                    str(path),
                    f"holds {kind}, not listing text or JSON Lines; fetch feeds with `digest sources add`",
                )
            return parse_listing_text(restored)
        # Only a handful are ever held: blank lines at the top of a file.
        leading_blank.append(line)
    return iter(())


def _ingest_file(
    sessions: sessionmaker[Session],
    path: Path,
    report: IngestReport,
    seen_at: datetime,
    progress: Callable[[int], None] | None,
) -> None:
    meter = _ByteMeter(progress)
    counts = StoreCounts()
    errors: list[RecordError] = []
    try:
        with path.open("rb") as stream, transaction(sessions) as session:
            batch: list[Incoming] = []
            for result in _parse(path, _read_lines(stream, path, meter)):
                incoming = result if isinstance(result, Rejected) else identify(result)
                if isinstance(incoming, Rejected):
                    errors.append(RecordError(str(path), incoming.line, incoming.message))
                    continue
                batch.append(incoming)
                if len(batch) >= LOOKUP_CHUNK:
                    counts.add(store_batch(session, batch, path.name, seen_at))
                    batch = []
                    meter.report()
            if batch:
                counts.add(store_batch(session, batch, path.name, seen_at))
    except OSError as exc:
        raise IngestFileError(str(path), f"could not be read: {exc.strerror or exc}") from None
    meter.report()
    report.new += counts.new
    report.updated += counts.updated
    report.duplicate += counts.duplicate
    report.rejected += len(errors)
    report.errors.extend(errors)
