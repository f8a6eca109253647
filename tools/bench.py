"""`make bench`: how fast each stage of the daily loop runs on the sample listings, as a table.

Everything runs on the embedded default in a temporary data dir: SQLite, the outbox, and an SMTP sink
(aiosmtpd, a dev dependency) on loopback for the SMTP row. The figures are for this machine and these sizes;
they are not asserted anywhere, only printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import random
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from digest.config import get_settings
from digest.db import transaction, upgrade
from digest.deliver.day import plan_day
from digest.deliver.sending import send_digests
from digest.demo import DEFAULT_LISTINGS
from digest.ingest.files import ingest_paths
from digest.ingest.formats import ParsedListing, SourceLine, parse_listing_text
from digest.mail.digest_email import digest_context
from digest.mail.render import Renderer, inline_css
from digest.models import Digest, DigestItem, Subscriber, SubscriberStatus
from digest.services import Services
from digest.tables import text_table

TOPICS = [
    "LoRA",
    "parameter-efficient fine-tuning",
    "diffusion models",
    "image generation",
    "dense retrieval",
    "question answering",
    "neural architecture search",
    "graph neural networks",
    "point clouds",
    "reinforcement learning",
    "knowledge distillation",
    "mixture of experts",
    "vision transformers",
    "contrastive learning",
    "large language models",
    "in-context learning",
    "model compression",
    "quantization",
    "speech recognition",
    "object detection",
    "semantic segmentation",
    "recommendation",
    "time series forecasting",
    "federated learning",
    "adversarial robustness",
    "out-of-distribution",
    "weight averaging",
    "pruning",
    "self-supervised learning",
    "masked autoencoders",
    "video generation",
    "3D reconstruction",
    "protein structure",
    "code generation",
    "retrieval-augmented generation",
    "instruction tuning",
    "tokenization",
    "state space models",
    "optimizers",
    "scaling laws",
]
T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
DAY = date(2026, 11, 23)


@dataclass
class Row:
    stage: str
    size: str
    seconds: float
    rate: str


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    elapsed: list[float] = []
    yield lambda: elapsed[0]
    elapsed.append(time.perf_counter() - start)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sample_papers(listings_dir: Path) -> list[ParsedListing]:
    return [
        parsed
        for listing_file in sorted(listings_dir.glob("*.txt"))
        for parsed in parse_listing_text(
            SourceLine(n, text.rstrip("\n")) for n, text in enumerate(listing_file.open(encoding="utf-8"), 1)
        )
        if isinstance(parsed, ParsedListing)
    ]


def write_jsonl(listings_dir: Path, path: Path, records: int, *, first: int = 0) -> None:
    """Variants `first`.. of the sample papers, each with a distinct title, so none is a duplicate."""
    papers = _sample_papers(listings_dir)
    numbers = range(first, first + records)
    with path.open("w", encoding="utf-8") as out:
        for n, paper in zip(numbers, _variants(papers, numbers), strict=True):
            out.write(
                json.dumps({"id": f"bench-{n}", "title": paper.title, "abstract": paper.abstract}) + "\n"
            )


def build(root: Path, name: str, **env: str) -> Services:
    settings = get_settings(
        {"DIGEST_DATA_DIR": str(root / name), "DIGEST_SECRET_KEY": "bench-" + "k" * 20, **env}
    )
    services = Services.build(settings)
    upgrade(services.engine)
    return services


def subscribe_many(services: Services, count: int, rng: random.Random) -> None:
    """Active subscribers with one to three topics each, stored in chunks (the ORM's defaults apply)."""
    for first in range(0, count, 10_000):
        with transaction(services.sessions) as session:
            session.add_all(
                Subscriber(
                    email=f"reader{n}@example.org",
                    topics=rng.sample(TOPICS, rng.randint(1, 3)),
                    status=SubscriberStatus.ACTIVE,
                    confirmed_at=T0,
                )
                for n in range(first, min(first + 10_000, count))
            )


def run(subscribers: int, jsonl_records: int, render_samples: int, listings_dir: Path) -> list[Row]:
    rows: list[Row] = []
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        root = Path(tmp)
        files = sorted(listings_dir.glob("*.txt"))

        services = build(root, "main")
        with timed() as took:
            report = ingest_paths(services.sessions, files, now=T0 - timedelta(hours=1))
        rows.append(
            Row(
                "ingest listing dumps",
                f"{report.new + report.duplicate} papers, {len(files)} files",
                took(),
                f"{(report.new + report.duplicate) / took():,.0f} papers/s",
            )
        )

        jsonl = root / "bench.jsonl"
        write_jsonl(listings_dir, jsonl, jsonl_records)
        rows.append(_ingest_in_child(root, jsonl))

        subscribe_many(services, subscribers, rng)
        with timed() as took:
            plan = plan_day(services, DAY, now=T0)
        rows.append(
            Row(
                "rank (plan the day)",
                f"{subscribers:,} subscribers x {report.new} papers",
                took(),
                f"{took() / subscribers * 1000:.2f} ms/subscriber",
            )
        )

        with services.sessions() as session:
            from sqlalchemy.orm import selectinload

            sample = session.scalars(
                select(Digest)
                .where(Digest.id.in_(plan.to_send[:render_samples]))
                .options(
                    selectinload(Digest.subscriber),
                    selectinload(Digest.items).selectinload(DigestItem.listing),
                )
            ).all()
            contexts = [digest_context(services, d) for d in sample]
        inlined_once, per_email = (
            Renderer.default(),
            Renderer(Renderer.default().templates_dir, preinline=False),
        )
        inlined_once.render("digest", contexts[0])
        with timed() as took:
            for context in contexts:
                inlined_once.render("digest", context)
        fast = took() / len(contexts)
        with timed() as took:
            for context in contexts:
                inline_css(per_email.render("digest", context).html)
        slow = took() / len(contexts)
        emails = f"{len(contexts)} emails"
        rows.append(
            Row(
                "render, CSS inlined once per template",
                emails,
                fast * len(contexts),
                f"{fast * 1e3:.2f} ms/email",
            )
        )
        slower = f"{slow * 1e3:.2f} ms/email ({slow / fast:.0f}x slower)"
        rows.append(
            Row("render + premailer per email (for comparison)", emails, slow * len(contexts), slower)
        )

        with timed() as took:
            results = send_digests(services, plan.to_send)
        sent = sum(r.value == "sent" for r in results.values())
        rows.append(
            Row(
                "send to the outbox (render, build, write .eml)",
                f"{sent:,} emails",
                took(),
                f"{sent / took():,.0f} emails/s",
            )
        )

        rows.append(_smtp_row(services, plan.to_send))
        services.close()
    return rows


def _ingest_child(root: str, jsonl: str, results: Any) -> None:
    services = build(Path(root), "jsonl")
    start = time.perf_counter()
    report = ingest_paths(services.sessions, [Path(jsonl)])
    results.put((report.new, time.perf_counter() - start, peak_rss_mb()))
    services.close()


def _ingest_in_child(root: Path, jsonl: Path) -> Row:
    """In a process of its own, so the peak memory is the ingest's alone and not the benchmark's."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_ingest_child, args=(str(root), str(jsonl), results))
    child.start()
    while True:
        try:
            new, seconds, peak = results.get(timeout=1.0)
            break
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"the ingest process died with exit code {child.exitcode}") from None
    child.join()
    size_mb = jsonl.stat().st_size / 1e6
    return Row(
        "ingest JSON Lines (own process)",
        f"{new:,} papers, {size_mb:,.0f} MB file",
        seconds,
        f"{new / seconds:,.0f} papers/s, peak {peak:,.0f} MB RSS",
    )


def _scoring_child(
    subscribers: int, listings: int, corpus_size: int, voted_share: float, results: Any
) -> None:
    """Score `subscribers` against `listings` new papers with the production ranker, block by block.

    The state is built as production builds it (papers ingested, subscribers stored, digests opened and
    claimed, votes stored and models retrained by the vote task's own function); only `Ranker` is timed:
    its per-run work (the window's vectors, similarities, keyword priors) and `rank` for every block.
    """
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from digest.deliver.planning import SCORING_BLOCK, claim_for_planning, open_day
    from digest.models import Feedback, Listing, Vote
    from digest.rank.learned import current_space, retrain
    from digest.rank.ranker import Ranker

    with tempfile.TemporaryDirectory(prefix="digest-bench-scoring-") as tmp:
        root = Path(tmp)
        services = build(root, "scoring")
        papers = _sample_papers(DEFAULT_LISTINGS)
        older, newer = root / "older.jsonl", root / "newer.jsonl"
        write_jsonl(DEFAULT_LISTINGS, older, corpus_size - listings)
        write_jsonl(DEFAULT_LISTINGS, newer, listings, first=corpus_size - listings)
        ingest_paths(services.sessions, [older], now=T0 - timedelta(days=30))
        ingest_paths(services.sessions, [newer], now=T0 - timedelta(hours=2))
        rng = random.Random(11)
        subscribe_many(services, subscribers, rng)
        current_space(services)
        with transaction(services.sessions) as session:
            new_ids = list(
                session.scalars(select(Listing.id).where(Listing.first_seen_at > T0 - timedelta(days=1)))
            )
            subscriber_ids = list(session.scalars(select(Subscriber.id)))
            voters = rng.sample(subscriber_ids, int(subscribers * voted_share))
            for subscriber_id in voters:
                chosen = rng.sample(new_ids, 5)
                session.add_all(
                    Feedback(subscriber_id=subscriber_id, listing_id=listing_id, vote=int(vote))
                    for listing_id, vote in zip(chosen, [Vote.MORE] * 3 + [Vote.LESS] * 2, strict=True)
                )
        for subscriber_id in voters:
            retrain(services, subscriber_id)  # what each vote's task has done before the day's run
        open_day(services, DAY, T0)
        candidates = claim_for_planning(services, T0)
        window_start = min(c.since for c in candidates)

        start = time.perf_counter()
        chosen_count = 0
        with services.sessions() as session:
            ranker = Ranker(services, session, window_start, T0)
            setup = time.perf_counter() - start
            for first in range(0, len(candidates), SCORING_BLOCK):
                picks = ranker.rank(session, candidates[first : first + SCORING_BLOCK])
                chosen_count += sum(len(p) for p in picks.values())
        scoring = time.perf_counter() - start
        window = len(ranker.window)
        services.close()

    # The per-user classifier of arxiv-sanity-lite, on the same papers, for a few users.
    stored = [f"{p.title}. {p.abstract}" for p in _variants(papers, range(corpus_size))]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english", max_features=20000)
    corpus = tfidf.fit_transform(stored)
    new_rows = corpus[-listings:]
    svm_start = time.perf_counter()
    for _ in range(5):
        labels = np.zeros(corpus_size)
        labels[rng.sample(range(corpus_size), 5)] = 1
        model = LinearSVC(class_weight="balanced", C=0.01).fit(corpus, labels)
        model.decision_function(new_rows)
    svm_per_user = (time.perf_counter() - svm_start) / 5
    results.put((scoring, setup, window, chosen_count / subscribers, svm_per_user, peak_rss_mb()))


def _variants(papers: list[ParsedListing], numbers: range) -> list[ParsedListing]:
    """Distinct titles over the sample papers' text, so nothing is dropped as a duplicate."""
    out = []
    for n in numbers:
        paper = papers[n % len(papers)]
        out.append(replace(paper, title=f"{paper.title} (variant {n})"))
    return out


def _scoring_in_child(subscribers: int, listings: int, corpus_size: int, voted_share: float) -> list[Row]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(
        target=_scoring_child, args=(subscribers, listings, corpus_size, voted_share, results)
    )
    child.start()
    while True:
        try:
            scoring, setup, window, per_subscriber_picks, svm_per_user, peak = results.get(timeout=1.0)
            break
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"the scoring process died with exit code {child.exitcode}") from None
    child.join()
    ours_per_subscriber = scoring / subscribers
    return [
        Row(
            "score + choose (rank.ranker.Ranker)",
            f"{subscribers:,} subscribers x {window:,} new ({corpus_size:,} stored)",
            scoring,
            f"{ours_per_subscriber * 1e6:,.0f} us/subscriber ({setup:.1f} s per-run setup), "
            f"{per_subscriber_picks:.1f} picks each, peak {peak:,.0f} MB RSS",
        ),
        Row(
            "per-user LinearSVC (arxiv-sanity-lite style)",
            f"one user: trained on {corpus_size:,} stored papers, scores the {listings:,} new",
            svm_per_user,
            f"{svm_per_user * 1e3:,.1f} ms/user = {svm_per_user / ours_per_subscriber:,.0f}x ours",
        ),
    ]


def _smtp_row(services: Services, digest_ids: list[int]) -> Row:
    from aiosmtpd.controller import Controller

    class Counter:
        def __init__(self) -> None:
            self.count = 0
            self.lock = threading.Lock()

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with self.lock:
                self.count += 1
            return "250 OK"

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = Counter()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with transaction(services.sessions) as session:
            for digest in session.scalars(select(Digest).where(Digest.id.in_(digest_ids))):
                digest.status = digest.status.PENDING
        smtp = Services(
            settings=replace(services.settings, smtp_url=f"smtp://127.0.0.1:{port}"),
            engine=services.engine,
            sessions=services.sessions,
        )
        with timed() as took:
            send_digests(smtp, digest_ids)
    finally:
        controller.stop()
    return Row(
        "send over SMTP (one connection per batch)",
        f"{sink.count:,} emails",
        took(),
        f"{sink.count / took():,.0f} emails/s",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--jsonl-records", type=int, default=100_000)
    parser.add_argument("--render-samples", type=int, default=200)
    parser.add_argument("--scoring-subscribers", type=int, default=100_000)
    parser.add_argument("--scoring-listings", type=int, default=1000)
    parser.add_argument("--scoring-corpus", type=int, default=20_000)
    parser.add_argument("--listings", type=Path, default=DEFAULT_LISTINGS)
    args = parser.parse_args()
    rows = run(args.subscribers, args.jsonl_records, args.render_samples, args.listings)
    rows += _scoring_in_child(args.scoring_subscribers, args.scoring_listings, args.scoring_corpus, 0.02)
    header = ("stage", "size", "seconds", "rate")
    table = [header] + [(r.stage, r.size, f"{r.seconds:.2f}", r.rate) for r in rows]
    print("\n".join(text_table(table, separator=" | ")))
    print(f"\npeak memory (max RSS of this process): {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
