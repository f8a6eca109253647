"""`digest demo`: the main job end to end on the embedded default, in a data dir of its own."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from digest.config import get_settings
from digest.db import transaction, upgrade
from digest.deliver.day import run_day
from digest.ingest.files import ingest_paths
from digest.models import Digest, DigestItem, utcnow
from digest.services import Services
from digest.subscribers.subscriptions import subscribe
from digest.tables import text_table

MARKER = ".digest-demo"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LISTINGS = PROJECT_ROOT.parent / "shared" / "listings"

DEMO_SUBSCRIBERS = {
    "ada@example.org": "LoRA, parameter-efficient fine-tuning",
    "grace@example.org": "diffusion models, image generation",
    "alan@example.org": "dense retrieval, question answering",
    "emmy@example.org": "neural architecture search",
    "katherine@example.org": "graph neural networks, point clouds",
}


class DemoError(RuntimeError):
    pass


def _fresh_dir(data_dir: Path) -> Path:
    data_dir = data_dir.resolve()
    if data_dir.exists():
        if not (data_dir / MARKER).exists() and any(data_dir.iterdir()):
            raise DemoError(f"{data_dir} exists and was not made by `digest demo`; choose another --data-dir")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / MARKER).write_text("made by `digest demo`; deleted by the next demo run\n", encoding="utf-8")
    return data_dir


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def run_demo(data_dir: Path, listings_dir: Path | None, echo: Callable[[str], None] = print) -> None:
    from workers.app import bind
    from workers.tasks import CeleryDispatcher

    listings_dir = listings_dir or DEFAULT_LISTINGS
    files = sorted(p for p in listings_dir.glob("*") if p.suffix in {".txt", ".jsonl", ".ndjson"})
    if not files:
        raise DemoError(f"no listing files (*.txt, *.jsonl) in {listings_dir}")

    data_dir = _fresh_dir(data_dir)
    settings = get_settings({"DIGEST_DATA_DIR": str(data_dir)})
    services = Services.build(settings)
    try:
        upgrade(services.engine)
        echo(f"Data dir: {data_dir} (SQLite, eager Celery tasks, outbox folder)")

        report = ingest_paths(services.sessions, files)
        echo(
            f"Ingested {len(files)} listing file(s) from {listings_dir}: {report.new} new, "
            f"{report.duplicate} duplicate, {report.rejected} rejected."
        )

        with transaction(services.sessions) as session:
            for email, topics in DEMO_SUBSCRIBERS.items():
                subscribe(session, email, topics, confirmed=True)
        echo(f"Subscribed {len(DEMO_SUBSCRIBERS)} readers with different topics.")

        bind(services)
        today = utcnow().date()
        summary = run_day(services, today, CeleryDispatcher())
        echo(
            f"Digest for {today}: {summary.sent} sent, {summary.nothing_new} skipped (nothing new), "
            f"{summary.failed} failed."
        )
        echo("")
        _print_table(services, echo)
        emails = sorted(settings.outbox_dir.glob("*.eml"))
        echo("")
        echo(f"{len(emails)} email(s) in {settings.outbox_dir}:")
        for path in emails:
            echo(f"  {path.name}")
    finally:
        services.close()


def _print_table(services: Services, echo: Callable[[str], None]) -> None:
    with services.sessions() as session:
        digests = session.scalars(
            select(Digest)
            .options(
                selectinload(Digest.subscriber), selectinload(Digest.items).selectinload(DigestItem.listing)
            )
            .order_by(Digest.id)
        ).all()
    rows = [("Subscriber", "Topics", "#", "Score", "Paper")]
    for row in digests:
        for item in row.items[:3]:
            first = item.rank == 1
            rows.append(
                (
                    row.subscriber.email if first else "",
                    _shorten(", ".join(row.subscriber.topics), 38) if first else "",
                    str(item.rank),
                    f"{item.score:.3f}",
                    _shorten(item.listing.title, 70),
                )
            )
    for line in text_table(rows):
        echo(line)
