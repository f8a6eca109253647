"""What a send batch reads: each claimed digest with its subscriber and papers, as plain values.

Loading a batch of 50 digests as ORM objects (digest, subscriber, ten items, their listings) cost about
0.8 ms per email, more than rendering it. Three Core queries build the same picture here, and a paper's
text, which every subscriber who got that paper shares, is read once per process per version of the
paper rather than once per batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, select

from digest.mail.digest_email import DigestToSend, Item, Paper, Reader
from digest.models import Digest, DigestItem, Listing, Subscriber
from digest.services import Services

# Papers kept per process: a day brings about a thousand, and each costs a few kilobytes.
PAPER_CACHE_SIZE = 20_000


class _Papers:
    """Papers by id, valid for the version (`updated_at`) they were read at."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[int, tuple[datetime | None, Paper]] = OrderedDict()

    def get(self, listing_id: int, updated_at: datetime | None) -> Paper | None:
        entry = self.entries.get(listing_id)
        if entry is None or entry[0] != updated_at:
            return None
        self.entries.move_to_end(listing_id)
        return entry[1]

    def put(self, listing_id: int, updated_at: datetime | None, paper: Paper) -> None:
        self.entries[listing_id] = (updated_at, paper)
        self.entries.move_to_end(listing_id)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


# Keyed by the engine object itself, so a new engine (another database) never sees another's papers, and
# a disposed one takes its cache with it.
_papers_by_engine: WeakKeyDictionary[Engine, _Papers] = WeakKeyDictionary()


def load_batch(services: Services, digest_ids: Sequence[int]) -> list[DigestToSend]:
    """The digests `digest_ids`, in id order, each with its items in rank order."""
    if not digest_ids:
        return []
    papers = _papers_by_engine.get(services.engine)
    if papers is None:
        papers = _papers_by_engine[services.engine] = _Papers(PAPER_CACHE_SIZE)
    ids = list(digest_ids)
    with services.engine.connect() as connection:
        rows = connection.execute(
            select(
                Digest.id,
                Digest.subscriber_id,
                Digest.digest_date,
                Digest.message_id,
                Digest.attempts,
                Digest.quiet_topics,
                Subscriber.email,
                Subscriber.public_id,
                Subscriber.topics,
                Subscriber.status,
                Subscriber.cadence,
                Subscriber.send_hour,
                Subscriber.timezone,
                Subscriber.weekly_day,
            )
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(Digest.id.in_(ids))
            .order_by(Digest.id)
        ).all()
        items = connection.execute(
            select(
                DigestItem.digest_id,
                DigestItem.listing_id,
                DigestItem.section,
                DigestItem.reason,
                Listing.updated_at,
            )
            .join(Listing, Listing.id == DigestItem.listing_id)
            .where(DigestItem.digest_id.in_(ids))
            .order_by(DigestItem.digest_id, DigestItem.rank)
        ).all()
        loaded: dict[int, Paper] = {}
        stale: set[int] = set()
        for item in items:
            paper = papers.get(item.listing_id, item.updated_at)
            if paper is None:
                stale.add(item.listing_id)
            else:
                loaded[item.listing_id] = paper
        if stale:
            for row in connection.execute(
                select(
                    Listing.id,
                    Listing.updated_at,
                    Listing.title,
                    Listing.url,
                    Listing.abstract,
                    Listing.authors,
                    Listing.arxiv_id,
                    Listing.categories,
                    Listing.published,
                    Listing.links,
                ).where(Listing.id.in_(sorted(stale)))
            ):
                paper = Paper(
                    row.title,
                    row.url,
                    row.abstract,
                    list(row.authors or []),
                    row.arxiv_id,
                    # Only what the email shows (the primary category, a PDF link) is kept in the cache.
                    list(row.categories or [])[:1],
                    row.published,
                    {k: v for k, v in (row.links or {}).items() if k == "pdf"},
                )
                papers.put(row.id, row.updated_at, paper)
                loaded[row.id] = paper
    batch = {
        row.id: DigestToSend(
            id=row.id,
            subscriber_id=row.subscriber_id,
            digest_date=row.digest_date,
            message_id=row.message_id,
            attempts=row.attempts,
            quiet_topics=list(row.quiet_topics or []),
            subscriber=Reader(
                row.subscriber_id,
                row.email,
                row.public_id,
                list(row.topics),
                row.status,
                row.cadence,
                row.send_hour,
                row.timezone,
                row.weekly_day,
            ),
        )
        for row in rows
    }
    for item in items:
        batch[item.digest_id].items.append(
            Item(item.listing_id, item.section, item.reason, loaded[item.listing_id])
        )
    return list(batch.values())
