"""A small but complete world for the admin pages: subscribers in every state, a configured source, papers
from files and from the source on several days, digests with papers, votes, and saved evaluation figures.
Shared by the admin page tests and the admin browser test."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from digest import evaluation_figures
from digest.db import transaction
from digest.ingest.files import ingest_paths
from digest.models import (
    Cadence,
    Digest,
    DigestItem,
    DigestStatus,
    Feedback,
    Fetch,
    Listing,
    Source,
    Subscriber,
    SubscriberStatus,
    Vote,
)
from digest.services import Services

ROOT = Path(__file__).resolve().parents[2]
SOURCE_NAME = "arxiv cs.LG"


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


@dataclass
class World:
    today: date
    ann: int
    bounced: int
    complained: int
    source_papers: int
    file_names: list[str]


def build_world(services: Services, today: date, listing_files: list[Path] | None = None) -> World:
    """Everything an operator might look at; `listing_files` are ingested as `digest ingest` would."""
    day = [today - timedelta(days=k) for k in range(40)]
    file_names: list[str] = []
    for k, path in enumerate(listing_files or []):
        ingest_paths(services.sessions, [path], now=noon(day[k + 1]))
        file_names.append(path.name)
    with transaction(services.sessions) as session:
        source = Source(
            name=SOURCE_NAME,
            kind="arxiv_rss",
            config={},
            interval_minutes=60,
            quiet_days=2,
            created_at=noon(day[10]),
        )
        session.add(source)
        session.flush()
        papers = []
        for k in range(12):
            listing = Listing(
                title_key=f"source paper {k}",
                title=f"A fetched paper about retrieval, number {k}",
                abstract="An abstract.",
                source=SOURCE_NAME,
                first_seen_at=noon(day[k % 4]),
            )
            session.add(listing)
            papers.append(listing)
        session.add(
            Fetch(
                source_id=source.id,
                started_at=noon(day[0]),
                finished_at=noon(day[0]),
                http_status=200,
                seen=12,
                new=12,
            )
        )
        session.flush()

        def subscriber(
            email: str, status: SubscriberStatus, topics: list[str], **extra: object
        ) -> Subscriber:
            row = Subscriber(email=email, topics=topics, status=status, created_at=noon(day[35]), **extra)
            session.add(row)
            session.flush()
            return row

        ann = subscriber(
            "ann@example.org",
            SubscriberStatus.ACTIVE,
            ["large language models", "retrieval"],
            confirmed_at=noon(day[20]),
            send_hour=7,
            timezone="Europe/Berlin",
        )
        bob = subscriber(
            "bob@example.org",
            SubscriberStatus.ACTIVE,
            ["retrieval", "graph neural networks"],
            confirmed_at=noon(day[6]),
            cadence=Cadence.WEEKLY,
            weekly_day=2,
        )
        subscriber(
            "cy@example.org",
            SubscriberStatus.ACTIVE,
            ["Retrieval"],
            confirmed_at=noon(day[3]),
            cadence=Cadence.PAUSED,
        )
        subscriber("dee@example.org", SubscriberStatus.PENDING, ["robotics"])
        bounced = subscriber(
            "gus@example.org",
            SubscriberStatus.BOUNCED,
            ["robotics"],
            confirmed_at=noon(day[30]),
            bounced_at=noon(day[2]),
            bounce_reason="550 5.1.1 mailbox unknown",
            soft_bounces=0,
        )
        complained = subscriber(
            "hal@example.org",
            SubscriberStatus.UNSUBSCRIBED,
            ["retrieval"],
            confirmed_at=noon(day[30]),
            unsubscribed_at=noon(day[1]),
            bounce_reason="complaint: marked as spam",
        )
        plan = [
            (ann, DigestStatus.SENT),
            (bob, DigestStatus.SENT),
            (bounced, DigestStatus.BOUNCED),
            (ann, DigestStatus.FAILED),
        ]
        # Oldest first, as the rows are made day by day.
        for k, (who, status) in reversed(list(enumerate(plan))):
            digest = Digest(
                subscriber_id=who.id,
                digest_date=day[k + 1],
                status=status,
                candidates_until=noon(day[k + 1]),
                created_at=noon(day[k + 1]),
                sent_at=noon(day[k + 1]) if status is DigestStatus.SENT else None,
                attempts=1,
                error="421 try again later, gave up after 5 attempts"
                if status is DigestStatus.FAILED
                else None,
            )
            session.add(digest)
            session.flush()
            chosen = papers[3 * k : 3 * k + 3]
            for rank, listing in enumerate(chosen):
                session.add(
                    DigestItem(
                        digest_id=digest.id,
                        subscriber_id=who.id,
                        listing_id=listing.id,
                        rank=rank,
                        score=1.0,
                        reason="test",
                    )
                )
            if status is DigestStatus.SENT:
                session.add(
                    Feedback(
                        subscriber_id=who.id,
                        listing_id=chosen[0].id,
                        vote=int(Vote.MORE),
                        updated_at=noon(day[0]),
                    )
                )
                session.add(
                    Feedback(
                        subscriber_id=who.id,
                        listing_id=chosen[1].id,
                        vote=int(Vote.LESS),
                        updated_at=noon(day[0]),
                    )
                )
        world = World(today, ann.id, bounced.id, complained.id, len(papers), file_names)

    figures = evaluation_figures.EvaluationFigures(
        ran_at=noon(day[1]),
        orderings=3,
        seeds=[7, 8, 9],
        papers=120,
        days=8,
        subscribers=["cats", "dogs"],
        methods={
            name: {
                "ndcg_first": first,
                "ndcg_later": later,
                "precision_first": first,
                "precision_later": later,
                "papers_per_digest": 9.5,
                "junk_share": 0.2,
                "ms_per_subscriber_day": 3.5,
            }
            for name, first, later in (
                ("random", 0.21, 0.2),
                ("keywords", 0.45, 0.46),
                ("rocchio", 0.45, 0.61),
                ("ours", 0.52, 0.7),
            )
        },
    )
    path = evaluation_figures.evaluation_path(services.settings.data_dir)
    evaluation_figures.save_evaluation(figures, path)
    shutil.copyfile(ROOT / "docs" / "evaluation.png", path.with_name("evaluation.png"))
    return world
