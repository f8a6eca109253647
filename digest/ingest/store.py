"""The store stage: one listing per paper, however many sources report it and however often.

A paper is recognised by its versionless arXiv id first, then its DOI, then the id its source gave
it, then its normalised title; a title alone never merges two papers whose arXiv ids or DOIs differ.
When a known paper arrives again its metadata is merged into the one row (authors, categories,
upvotes, links, the sources that reported it), and a newer version replaces the title and abstract.
The row keeps its `first_seen_at`, so a new version is never a new candidate: nobody is sent it twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from digest.ingest.formats import ParsedListing, Rejected, normalize_title
from digest.ingest.parsers.identity import arxiv_abs_url, normalize_arxiv_id, normalize_doi
from digest.models import Listing

MAX_EXTERNAL_ID_CHARS = 200
MAX_SOURCE_CHARS = 500
MAX_DOI_CHARS = 200

# Fields a newer version of a paper replaces.
VERSIONED_FIELDS = ("title", "title_key", "abstract", "version")


@dataclass
class StoreCounts:
    new: int = 0
    updated: int = 0
    duplicate: int = 0
    # New versions of papers announced before we stored them: old news, so not stored as new.
    skipped_replacements: int = 0

    def add(self, other: StoreCounts) -> None:
        self.new += other.new
        self.updated += other.updated
        self.duplicate += other.duplicate
        self.skipped_replacements += other.skipped_replacements


@dataclass
class Incoming:
    """A parsed paper with its identity worked out, ready to be matched and stored."""

    line: int
    arxiv_id: str | None
    doi: str | None
    external_id: str | None
    title_key: str
    fields: dict[str, Any] = field(default_factory=dict)
    replacement: bool = False


def identify(parsed: ParsedListing) -> Incoming | Rejected:
    """Work out every identity a paper carries, whichever field its source put it in."""
    title_key = normalize_title(parsed.title)
    if not title_key:
        return Rejected(parsed.line, "'title' has no letters or digits")
    arxiv_id, version = parsed.arxiv_id, parsed.version
    external_id = parsed.external_id.strip() if parsed.external_id else None
    if arxiv_id is None:
        for candidate in (external_id, parsed.url):
            found = normalize_arxiv_id(candidate) if candidate else None
            if found is not None:
                arxiv_id, version = found[0], version if version is not None else found[1]
                break
    if external_id is not None and arxiv_id is not None and normalize_arxiv_id(external_id) is not None:
        external_id = None  # the arXiv id is the identity; keeping "arXiv:...v2" too would split versions
    if external_id is not None and len(external_id) > MAX_EXTERNAL_ID_CHARS:
        return Rejected(parsed.line, f"'id' longer than {MAX_EXTERNAL_ID_CHARS} characters")
    doi = normalize_doi(parsed.doi) if parsed.doi else None
    if doi is not None and len(doi) > MAX_DOI_CHARS:
        doi = None
    return Incoming(
        line=parsed.line,
        arxiv_id=arxiv_id,
        doi=doi,
        external_id=external_id,
        title_key=title_key,
        fields={
            "title": parsed.title,
            "title_key": title_key,
            "abstract": parsed.abstract,
            "url": parsed.url,
            "authors": list(parsed.authors),
            "published": parsed.published,
            "version": version,
            "categories": _unique(parsed.categories),
            "upvotes": parsed.upvotes,
            "links": dict(parsed.links),
        },
        replacement=(parsed.announce_type or "").startswith("replace"),
    )


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


class _Index:
    """Known papers by each identity: rows already stored and rows this batch is about to insert."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], Listing | dict[str, Any]] = {}
        self.by_title: dict[str, list[Listing | dict[str, Any]]] = defaultdict(list)

    def add(self, row: Listing | dict[str, Any]) -> None:
        for kind in ("arxiv_id", "doi", "external_id"):
            value = _get(row, kind)
            if value:
                self.by_key[(kind, value)] = row
        self.by_title[_get(row, "title_key")].append(row)

    def match(self, incoming: Incoming) -> Listing | dict[str, Any] | None:
        for kind in ("arxiv_id", "doi", "external_id"):
            value = getattr(incoming, kind)
            if value and (kind, value) in self.by_key:
                return self.by_key[(kind, value)]
        for row in self.by_title.get(incoming.title_key, []):
            if _compatible(row, incoming):
                return row
        return None

    def owner(self, kind: str, value: str) -> Listing | dict[str, Any] | None:
        return self.by_key.get((kind, value))


def _get(row: Listing | dict[str, Any], name: str) -> Any:
    return row[name] if isinstance(row, dict) else getattr(row, name)


def _compatible(row: Listing | dict[str, Any], incoming: Incoming) -> bool:
    """Same title, but not two papers that carry different arXiv ids or DOIs."""
    for kind in ("arxiv_id", "doi"):
        mine, theirs = _get(row, kind), getattr(incoming, kind)
        if mine and theirs and mine != theirs:
            return False
    return True


def _merged(row: Listing | dict[str, Any], incoming: Incoming, source: str, index: _Index) -> dict[str, Any]:  # noqa: C901 - one rule per merged field, kept together so the merge reads as a table
    """The changes that bring a stored paper up to date with what a source now says about it."""
    changes: dict[str, Any] = {}
    new = incoming.fields
    old_version, new_version = _get(row, "version"), new["version"]
    newer = new_version is not None and (old_version is None or new_version > old_version)
    if newer:
        for name in VERSIONED_FIELDS:
            if new[name] != _get(row, name):
                changes[name] = new[name]
        # A new version may add or drop authors: the newest list wins, as the title and abstract do.
        if new["authors"] and new["authors"] != _get(row, "authors"):
            changes["authors"] = new["authors"]
    for kind in ("arxiv_id", "doi", "external_id"):
        value = getattr(incoming, kind)
        owner = index.owner(kind, value) if value else None
        if value and not _get(row, kind) and (owner is None or owner is row):
            changes[kind] = value
    arxiv_id = changes.get("arxiv_id") or _get(row, "arxiv_id")
    if arxiv_id and _get(row, "url") != arxiv_abs_url(arxiv_id):
        # One link rule whichever source came first: the arXiv abstract page when the id is known.
        changes["url"] = arxiv_abs_url(arxiv_id)
    elif _get(row, "url") is None and new["url"] is not None:
        changes["url"] = new["url"]
    if _get(row, "published") is None and new["published"] is not None:
        changes["published"] = new["published"]
    if not _get(row, "authors") and new["authors"] and "authors" not in changes:
        changes["authors"] = new["authors"]
    categories = _unique([*(_get(row, "categories") or []), *new["categories"]])
    if categories != (_get(row, "categories") or []):
        changes["categories"] = categories
    if new["upvotes"] is not None and new["upvotes"] != _get(row, "upvotes"):
        changes["upvotes"] = new["upvotes"]
    links = {**new["links"], **(_get(row, "links") or {})}
    if links != (_get(row, "links") or {}):
        changes["links"] = links
    seen_in = _get(row, "seen_in") or [_get(row, "source")]
    if source not in seen_in:
        changes["seen_in"] = [*seen_in, source]
    return changes


def _apply(row: Listing | dict[str, Any], changes: dict[str, Any]) -> None:
    if isinstance(row, dict):
        row.update(changes)
    else:
        for name, value in changes.items():
            setattr(row, name, value)


def _existing_rows(session: Session, batch: Sequence[Incoming]) -> list[Listing]:
    conditions = []
    for column, values in (
        (Listing.arxiv_id, {c.arxiv_id for c in batch if c.arxiv_id}),
        (Listing.doi, {c.doi for c in batch if c.doi}),
        (Listing.external_id, {c.external_id for c in batch if c.external_id}),
        (Listing.title_key, {c.title_key for c in batch}),
    ):
        if values:
            conditions.append(column.in_(sorted(values)))
    if not conditions:
        return []
    return list(session.scalars(select(Listing).where(or_(*conditions))))


def store_batch(session: Session, batch: Sequence[Incoming], source: str, seen_at: datetime) -> StoreCounts:
    """Insert new papers and merge known ones, in the caller's transaction.

    Costs one query for the batch's known rows and one bulk insert, whatever the batch size; keep
    batches to a few hundred so the IN lists stay short.
    """
    source = source[:MAX_SOURCE_CHARS]
    counts = StoreCounts()
    index = _Index()
    for stored in _existing_rows(session, batch):
        index.add(stored)
    inserts: list[dict[str, Any]] = []
    for incoming in batch:
        match = index.match(incoming)
        if match is None and incoming.replacement:
            counts.skipped_replacements += 1
            continue
        if match is None:
            new_row: dict[str, Any] = {
                **incoming.fields,
                "arxiv_id": incoming.arxiv_id,
                "doi": incoming.doi if incoming.doi and index.owner("doi", incoming.doi) is None else None,
                "external_id": incoming.external_id,
                "source": source,
                "seen_in": [source],
                "first_seen_at": seen_at,
                "updated_at": None,
            }
            inserts.append(new_row)
            index.add(new_row)
            counts.new += 1
            continue
        changes = _merged(match, incoming, source, index)
        if not changes:
            counts.duplicate += 1
            continue
        # Another source reporting the same paper is worth remembering, not worth calling an update.
        merely_seen_again = set(changes) == {"seen_in"}
        if not merely_seen_again:
            changes["updated_at"] = seen_at
        _apply(match, changes)
        for kind in ("arxiv_id", "doi", "external_id"):
            if kind in changes:
                index.by_key[(kind, changes[kind])] = match
        if merely_seen_again:
            counts.duplicate += 1
        else:
            counts.updated += 1
    if inserts:
        session.execute(insert(Listing), inserts)
    session.flush()
    return counts
