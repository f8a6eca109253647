"""`make bench`, second part: a whole day's delivery in production mode, timed end to end, beside a
bare SMTP client sending the same messages to the same sink in the same run.

PostgreSQL (a scratch database on the local server), Redis as the Celery broker, a `celery worker` as
deployed (prefork pool, 8 processes: sending waits on the network and the database more than it
computes), and an SMTP sink in a process of its own. The clock starts when the beat's tick task is queued
and stops when the last digest is recorded as sent: claiming the due subscribers, ranking, rendering, and
sending, all included. Setup (papers, subscribers, the feature space) is not timed. The bare probe then
sends real digests of that day, composed beforehand, with plain `smtplib` over two persistent
connections: what this machine and this sink carry with no service around it. CPU seconds per email,
read from /proc for every process involved, say where the day's time goes. Last, the same digests go
through a private Postfix, by plain smtplib and by our transport.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import smtplib
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
from digest.deliver.batch import load_batch
from digest.demo import DEFAULT_LISTINGS
from digest.ingest.files import ingest_paths
from digest.mail.compose import OutgoingMail
from digest.mail.digest_email import render_digest
from digest.mail.transport import SmtpMailer
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
    cpu_seconds: dict[str, float]
    probe_seconds: float
    probe_messages: int
    probe_connections: int
    relay: RelayResult | None = None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far (its reaped children excluded)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid] + ([int(c) for c in children.read_text().split()] if children.exists() else [])


def _processes_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cpu_snapshot(worker_pids: list[int], sink_pid: int) -> dict[str, dict[int, float]]:
    """CPU time per process of each part; PostgreSQL's backends come and go, so each is kept by pid."""

    def read(pids: list[int]) -> dict[int, float]:
        times = {}
        for pid in pids:
            try:
                times[pid] = _cpu_seconds(pid)
            except OSError:
                continue
        return times

    return {
        "celery worker processes": read([p for w in worker_pids for p in _tree(w)]),
        "smtp sink": read([sink_pid]),
        "postgresql (whole server)": read(_processes_named("postgres")),
        "redis (whole server)": read(_processes_named("redis-server")),
    }


def _cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    return {
        part: sum(seconds - before[part].get(pid, 0.0) for pid, seconds in after[part].items())
        for part in after
    }


def _probe_child(url: str, messages: list[tuple[str, str, bytes]], count: int) -> None:
    host, port = url.removeprefix("smtp://").rsplit(":", 1)
    with smtplib.SMTP(host, int(port)) as client:
        for n in range(count):
            sender, recipient, data = messages[n % len(messages)]
            client.sendmail(sender, [recipient], data)


def bare_probe(url: str, messages: list[tuple[str, str, bytes]], count: int, connections: int) -> float:
    """Seconds for plain smtplib to send `count` ready-made messages over `connections` persistent
    connections, one process each so the client side is not held back by one interpreter."""
    return client_probe(url, messages, count, connections, ours=False)


def _our_client_child(url: str, messages: list[tuple[str, str, bytes]], count: int) -> None:
    mailer = SmtpMailer(url)
    with mailer.open() as connection:
        for n in range(count):
            sender, recipient, data = messages[n % len(messages)]
            connection.send(OutgoingMail(sender, recipient, f"<probe-{n}@bench>", data), lambda: None)


def client_probe(
    url: str, messages: list[tuple[str, str, bytes]], count: int, connections: int, *, ours: bool
) -> float:
    """Like `bare_probe`, with the production transport (`SmtpMailer`: pipelining, the final "." sent
    after a hand-over callback) in place of plain smtplib when `ours`."""
    context = multiprocessing.get_context("fork")
    target = _our_client_child if ours else _probe_child
    shares = [count // connections + (1 if n < count % connections else 0) for n in range(connections)]
    children = [
        context.Process(target=target, args=(url, messages[n::connections] or messages, share))
        for n, share in enumerate(shares)
    ]
    start = time.perf_counter()
    for child in children:
        child.start()
    for child in children:
        child.join()
    seconds = time.perf_counter() - start
    if any(child.exitcode != 0 for child in children):
        raise RuntimeError(f"the SMTP probe to {url} failed")
    return seconds


@dataclass
class RelayResult:
    messages: int
    connections: int
    bare_seconds: float
    ours_seconds: float
    accepted: int


def through_postfix(
    sample: list[tuple[str, str, bytes]], count: int, connections: int = 2
) -> RelayResult | None:
    """The same ready-made digests through a real relay: a private Postfix on loopback (`tools.postfix`),
    which discards mail to example.org after accepting and queueing it. Needs root and Debian's postfix."""
    from tools.postfix import POSTFIX, PostfixInstance

    if os.geteuid() != 0 or not POSTFIX.exists():
        return None
    with PostfixInstance.start() as postfix:
        bare = client_probe(postfix.url, sample, count, connections, ours=False)
        ours = client_probe(postfix.url, sample, count, connections, ours=True)
        accepted = postfix.wait_for_accepted(2 * count, timeout=120)
    return RelayResult(count, connections, bare, ours, accepted)


def _sample_messages(services: Services, count: int) -> list[tuple[str, str, bytes]]:
    """Some of the day's digests, composed by the production code, for the probe to send as they are."""
    with services.sessions() as session:
        ids = session.scalars(
            select(Digest.id).where(Digest.status == DigestStatus.SENT).order_by(Digest.id).limit(count)
        ).all()
    mails = [render_digest(services, row) for row in load_batch(services, ids)]
    return [(mail.sender, mail.recipient, mail.data) for mail in mails]


def _tree_peaks(pid: int) -> list[float]:
    """The worker's own peak and its pool children's; a solo pool has none."""
    return [peak_rss_mb(member) for member in _tree(pid)]


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
    subscribers: int,
    stored: int,
    new: int,
    workers: int,
    admin_url: str,
    redis_url: str,
    *,
    pool: str = "prefork",
    concurrency: int = 8,
    probe_messages: int = 20_000,
    probe_connections: int = 2,
    relay_messages: int = 5_000,
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
                    f"--pool={pool}",
                    f"--concurrency={concurrency}",
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
            cpu_before = _cpu_snapshot([p.pid for p in processes], sink.pid)
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
            cpu = _cpu_used(cpu_before, _cpu_snapshot([p.pid for p in processes], sink.pid))
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
        print(
            f"the bare SMTP probe: {probe_messages:,} messages over {probe_connections} connections...",
            flush=True,
        )
        sample = _sample_messages(services, 200)
        probe_seconds = bare_probe(sink.url, sample, probe_messages, probe_connections)
        if sink.messages_count() != received + probe_messages:
            raise RuntimeError("the sink did not receive every message the bare probe sent")
        sink.stop()
        print("the same digests through a private Postfix, bare smtplib and our client...", flush=True)
        relay = through_postfix(sample, min(probe_messages, relay_messages))
        services.close()
    return DayResult(
        subscribers,
        new,
        stored,
        seconds,
        first_email or float("nan"),
        statuses,
        received,
        peaks,
        cpu,
        probe_seconds,
        probe_messages,
        probe_connections,
        relay,
    )


def report(result: DayResult) -> list[str]:
    sent = result.statuses.get("sent", 0)
    day_rate = sent / result.seconds
    probe_rate = result.probe_messages / result.probe_seconds
    rows = [
        ("what", "size", "seconds", "emails/s", "share of the bare probe"),
        (
            "whole day: claim, rank, render, send",
            f"{result.subscribers:,} subscribers x {result.new_listings:,} new "
            f"({result.stored_listings:,} stored)",
            f"{result.seconds:.1f}",
            f"{day_rate:,.0f}",
            f"{day_rate / probe_rate:.0%}",
        ),
        (
            f"bare probe: smtplib, {result.probe_connections} connections, ready-made digests",
            f"{result.probe_messages:,} messages",
            f"{result.probe_seconds:.1f}",
            f"{probe_rate:,.0f}",
            "100%",
        ),
    ]
    lines = text_table(rows, separator=" | ", right_aligned=range(2, 5))
    lines.append("")
    lines.append(f"first email after {result.first_email_after:.0f} s of the day")
    lines.append(
        "digests: "
        + ", ".join(f"{count:,} {status}" for status, count in sorted(result.statuses.items()))
        + f"; the SMTP sink received {result.received:,} from the day"
    )
    per_email = {part: seconds / max(sent, 1) * 1000 for part, seconds in result.cpu_seconds.items()}
    lines.append(
        "CPU per email during the day: "
        + ", ".join(f"{part} {ms:.2f} ms" for part, ms in per_email.items())
        + f"; {sum(per_email.values()):.2f} ms in all, on {os.cpu_count()} cores"
    )
    lines.append(
        "peak memory (VmHWM): " + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in result.peaks_mb.items())
    )
    lines.append("")
    relay = result.relay
    if relay is None:
        lines.append("Postfix: not run (needs root and Debian's postfix; `make test` installs it)")
        return lines
    bare_rate, ours_rate = relay.messages / relay.bare_seconds, relay.messages / relay.ours_seconds
    relay_rows = [
        (
            "through a private Postfix (real ESMTP, queued, then discarded)",
            "messages",
            "seconds",
            "emails/s",
            "ratio",
        ),
        (
            f"bare smtplib, {relay.connections} connections",
            f"{relay.messages:,}",
            f"{relay.bare_seconds:.1f}",
            f"{bare_rate:,.0f}",
            "100%",
        ),
        (
            f"our client (digest.mail.transport, pipelined), {relay.connections} connections",
            f"{relay.messages:,}",
            f"{relay.ours_seconds:.1f}",
            f"{ours_rate:,.0f}",
            f"{ours_rate / bare_rate:.0%}",
        ),
    ]
    lines += text_table(relay_rows, separator=" | ", right_aligned=range(1, 5))
    lines.append(f"Postfix's log counts {relay.accepted:,} messages accepted over SMTP")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--stored", type=int, default=20_000)
    parser.add_argument("--new", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes (each with its pool)")
    parser.add_argument("--pool", default="prefork", choices=["solo", "threads", "prefork"])
    parser.add_argument("--concurrency", type=int, default=8, help="tasks at once in each worker")
    parser.add_argument("--probe-messages", type=int, default=20_000)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("DIGEST_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--redis", default=os.environ.get("DIGEST_BENCH_REDIS", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()
    result = run_day(
        args.subscribers,
        args.stored,
        args.new,
        args.workers,
        args.postgres,
        args.redis,
        pool=args.pool,
        concurrency=args.concurrency,
        probe_messages=args.probe_messages,
    )
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
