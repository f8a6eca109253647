"""`make bench`, second part: a whole day's delivery in production mode, timed end to end.

PostgreSQL (a scratch database on the local server), Redis as the Celery broker, two `celery worker`
processes, and an SMTP sink in a process of its own. The clock starts when the beat's tick task is
queued and stops when the last digest is recorded as sent: claiming the due subscribers, ranking,
rendering, and sending, all included. Setup (papers, subscribers, the feature space) is not timed.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text

from digest.config import get_settings
from digest.db import transaction, upgrade
from digest.demo import DEFAULT_LISTINGS
from digest.ingest.files import ingest_paths
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.rank.learned import current_space
from digest.services import Services
from digest.tables import text_table
from tools.bench import TOPICS, write_jsonl
from tools.sink import SinkProcess, peak_rss_mb

DONE = (DigestStatus.SENT, DigestStatus.EMPTY, DigestStatus.FAILED, DigestStatus.BOUNCED)
BIN = Path(sys.executable).parent


@dataclass
class DayResult:
    subscribers: int
    new_listings: int
    stored_listings: int
    seconds: float
    first_email_after: float
    statuses: dict[str, int]
    received: int
    peaks_mb: dict[str, float]


def _tree_peaks(pid: int) -> list[float]:
    """The worker's own peak and its pool children's; a solo pool has none."""
    peaks = [peak_rss_mb(pid)]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        peaks += [peak_rss_mb(int(child)) for child in children.read_text().split()]
    return peaks


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    name = f"digest_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _setup(services: Services, root: Path, subscribers: int, stored: int, new: int) -> None:
    now = utcnow()
    old, fresh = root / "stored.jsonl", root / "new.jsonl"
    write_jsonl(DEFAULT_LISTINGS, old, stored + new)
    lines = old.read_text(encoding="utf-8").splitlines(keepends=True)
    old.write_text("".join(lines[:stored]), encoding="utf-8")
    fresh.write_text("".join(lines[stored:]), encoding="utf-8")
    ingest_paths(services.sessions, [old], now=now - timedelta(days=30))
    current_space(services)  # yesterday's space; today's new papers are too few to refit it
    ingest_paths(services.sessions, [fresh], now=now - timedelta(hours=2))
    rng = random.Random(5)
    due = now - timedelta(minutes=1)
    for start in range(0, subscribers, 10_000):
        with transaction(services.sessions) as session:
            session.execute(
                insert(Subscriber),
                [
                    {
                        "email": f"reader{n}@example.org",
                        "topics": rng.sample(TOPICS, rng.randint(1, 3)),
                        "status": SubscriberStatus.ACTIVE,
                        "next_due_at": due,
                        "show_trending": False,
                    }
                    for n in range(start, min(start + 10_000, subscribers))
                ],
            )


def run_day(
    subscribers: int, stored: int, new: int, workers: int, admin_url: str, redis_url: str
) -> DayResult:
    with (
        tempfile.TemporaryDirectory(prefix="digest-bench-day-") as tmp,
        scratch_database(admin_url) as db_url,
    ):
        root = Path(tmp)
        sink = SinkProcess.start(root / "sink.jsonl")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        env.update(
            {
                "DIGEST_DATA_DIR": str(root / "data"),
                "DIGEST_DATABASE_URL": db_url,
                "DIGEST_BROKER_URL": redis_url,
                "DIGEST_SMTP_URL": sink.url,
                "DIGEST_SECRET_KEY": "bench-day-" + uuid.uuid4().hex,
                "DIGEST_FROM": "Paper digest <digest@example.org>",
                "DIGEST_QUEUE": f"digest-bench-{uuid.uuid4().hex[:8]}",
            }
        )
        services = Services.build(get_settings(env))
        upgrade(services.engine)
        print(
            f"setting up {subscribers:,} subscribers, {stored:,} stored and {new:,} new papers...", flush=True
        )
        _setup(services, root, subscribers, stored, new)

        from workers.app import bind
        from workers.tasks import tick

        bind(services)
        processes = [
            subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    "workers.app",
                    "worker",
                    "--pool=solo",
                    "--loglevel=WARNING",
                    f"--hostname=bench{n}@%h",
                ],
                env=env,
                stdout=(root / f"worker{n}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            for n in range(workers)
        ]
        peaks: dict[str, float] = {}
        try:
            time.sleep(3)  # let both workers connect before the clock starts
            for n, process in enumerate(processes):
                if process.poll() is not None:
                    raise RuntimeError((root / f"worker{n}.log").read_text())
            print("running the day...", flush=True)
            start = time.perf_counter()
            tick.delay()
            first_email = None
            while True:
                time.sleep(1)
                if first_email is None and sink.messages_count() > 0:
                    first_email = time.perf_counter() - start
                with services.sessions() as session:
                    finished = session.scalar(select(func.count()).where(Digest.status.in_(DONE))) or 0
                if finished >= subscribers:
                    break
                for n, process in enumerate(processes):
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"worker {n} died:\n" + (root / f"worker{n}.log").read_text()[-3000:]
                        )
                if time.perf_counter() - start > 3600:
                    raise RuntimeError(f"not finished after an hour: {finished:,} of {subscribers:,}")
            seconds = time.perf_counter() - start
            for n, process in enumerate(processes):
                for k, peak in enumerate(_tree_peaks(process.pid)):
                    peaks[f"worker {n + 1}" + (f" pool child {k}" if k else "")] = peak
            peaks["smtp sink"] = sink.peak_rss_mb()
            peaks["this process (setup, queueing the tick, polling)"] = peak_rss_mb(os.getpid())
            import redis

            info = redis.Redis.from_url(redis_url).info("memory")
            peaks["redis (used_memory_peak, whole server)"] = int(info["used_memory_peak"]) / 2**20
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        with services.sessions() as session:
            statuses = {
                status.value: count
                for status, count in session.execute(
                    select(Digest.status, func.count()).group_by(Digest.status)
                )
            }
        received = sink.messages_count()
        sink.stop()
        services.close()
    return DayResult(
        subscribers, new, stored, seconds, first_email or float("nan"), statuses, received, peaks
    )


def report(result: DayResult) -> list[str]:
    sent = result.statuses.get("sent", 0)
    rows = [
        ("stage", "size", "seconds", "rate"),
        (
            "whole day: claim, rank, render, send",
            f"{result.subscribers:,} subscribers x {result.new_listings:,} new "
            f"({result.stored_listings:,} stored)",
            f"{result.seconds:.1f}",
            f"{sent / result.seconds:,.0f} emails/s; first email after {result.first_email_after:.0f} s",
        ),
    ]
    lines = text_table(rows, separator=" | ")
    lines.append("")
    lines.append(
        "digests: "
        + ", ".join(f"{count:,} {status}" for status, count in sorted(result.statuses.items()))
        + f"; the SMTP sink received {result.received:,}"
    )
    lines.append(
        "peak memory (VmHWM): " + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in result.peaks_mb.items())
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--stored", type=int, default=20_000)
    parser.add_argument("--new", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("DIGEST_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--redis", default=os.environ.get("DIGEST_BENCH_REDIS", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()
    result = run_day(args.subscribers, args.stored, args.new, args.workers, args.postgres, args.redis)
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
