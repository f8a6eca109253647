"""A small day of papers and readers, and a dispatcher that sends in the calling thread."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from digest.db import transaction
from digest.deliver.sending import send_digests
from digest.ingest.files import ingest_paths
from digest.services import Services
from digest.subscribers.subscriptions import subscribe

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
DAY = date(2026, 11, 23)

LORA = [
    ("Sparse low-rank adapters for fine-tuning", "We fine-tune large language models with LoRA adapters."),
    ("Rank-adaptive LoRA", "Adapter ranks chosen per layer make parameter-efficient fine-tuning cheaper."),
    (
        "LoRA for vision transformers",
        "Low-rank adaptation transfers to image classifiers with few parameters.",
    ),
]
OTHER = [
    ("Protein folding with attention", "Structure prediction from sequence alone using attention."),
    ("Traffic forecasting on road graphs", "Spatio-temporal models predict congestion on city roads."),
]


class InlineDispatcher:
    """Sends in the calling thread; the Celery path is covered by the whole-loop and worker tests."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def send_digests(self, digest_ids: Sequence[int]) -> None:
        send_digests(self.services, digest_ids)

    def send_confirmation(self, subscriber_id: int) -> None:
        raise AssertionError("no confirmation expected here")

    def retrain(self, subscriber_id: int) -> None:
        raise AssertionError("no votes expected here")


def ingest(services: Services, tmp_path: Path, papers: list[tuple[str, str]], at: datetime) -> None:
    path = tmp_path / f"papers-{at.timestamp():.0f}-{len(papers)}.jsonl"
    path.write_text(
        "".join(json.dumps({"title": t, "abstract": a}) + "\n" for t, a in papers), encoding="utf-8"
    )
    report = ingest_paths(services.sessions, [path], now=at)
    assert report.new == len(papers), report


def add_subscriber(services: Services, email: str, topics: str) -> None:
    with transaction(services.sessions) as session:
        subscribe(session, email, topics, confirmed=True)


def outbox(services: Services) -> list[str]:
    return sorted(p.name for p in services.settings.outbox_dir.glob("*.eml"))
