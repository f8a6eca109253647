"""A worker killed with SIGKILL in the middle of sending: after a restart, every subscriber has one email.

Real processes throughout: PostgreSQL, Redis as the broker, `celery worker` with two pool processes, and an
SMTP sink in a process of its own, so what it received is counted independently of our database.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from digest.config import get_settings
from digest.db import transaction, upgrade
from digest.deliver.sending import Reconciled
from digest.models import Digest, DigestStatus, Subscriber, SubscriberStatus, utcnow
from digest.services import Services
from tests.support.daily import LORA, ingest
from tests.support.env import ROOT
from tests.support.workers import BIN, production_environment
from tools.sink import SinkProcess

pytestmark = pytest.mark.integration

SUBSCRIBERS = 2000
LEASE_SECONDS = 4
POOL_PROCESSES = 2


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SinkProcess]:
    # A little latency per message keeps the kill in the middle of the run rather than after it.
    process = SinkProcess.start(tmp_path / "sink.jsonl", delay_ms=2)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def env(tmp_path: Path, postgres_url: str, sink: SinkProcess) -> dict[str, str]:
    return production_environment(
        tmp_path, postgres_url, sink.url, DIGEST_SEND_LEASE_SECONDS=str(LEASE_SECONDS)
    )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "workers.app",
                "worker",
                f"--concurrency={POOL_PROCESSES}",
                "--loglevel=INFO",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,  # its own process group, so the kill takes the pool processes too
        )


def beat_tick(env: dict[str, str]) -> tuple[str, list[Reconciled]]:
    """What the beat does, in a process of its own as in production: `digest tick`."""
    done = subprocess.run([str(BIN / "digest"), "tick"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    settled = [
        Reconciled(int(m["id"]), m["email"], "certainly did not leave" in m["why"], m["why"])
        for m in re.finditer(
            r"^reconciled digest (?P<id>\d+) to (?P<email>\S+): (?P<why>.+)$", done.stdout, re.M
        )
    ]
    return done.stdout, settled


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_a_killed_worker_sends_no_email_twice_and_loses_at_most_those_in_flight(
    env: dict[str, str], sink: SinkProcess, tmp_path: Path
) -> None:
    services = Services.build(get_settings(env))
    upgrade(services.engine)
    ingest(services, tmp_path, LORA, utcnow() - timedelta(hours=1))
    emails = [f"reader{n:04d}@example.org" for n in range(SUBSCRIBERS)]
    with transaction(services.sessions) as session:
        session.execute(
            insert(Subscriber),
            [
                {
                    "email": email,
                    "topics": ["LoRA"],
                    "status": SubscriberStatus.ACTIVE,
                    "next_due_at": utcnow() - timedelta(minutes=1),
                }
                for email in emails
            ],
        )

    first, _ = beat_tick(env)
    assert f"{SUBSCRIBERS} digest(s) opened" in first and f"{SUBSCRIBERS} queued to send" in first, first

    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        wait_for(lambda: len(sink.messages()) >= SUBSCRIBERS // 4, 120, "a quarter of the emails")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    at_kill = len(sink.messages())
    assert at_kill < SUBSCRIBERS, "the run finished before the kill; the test proves nothing"

    with services.sessions() as session:
        stuck = session.scalar(select(func.count()).where(Digest.status == DigestStatus.SENDING))
    assert stuck, "the kill landed between batches; nothing was left in sending"

    worker = start_worker(env, log)
    reconciled: list[Reconciled] = []
    try:

        def all_settled() -> bool:
            reconciled.extend(beat_tick(env)[1])
            with services.sessions() as session:
                unsent = session.scalar(select(func.count()).where(Digest.status != DigestStatus.SENT))
            return unsent == 0

        wait_for(all_settled, 300, "every digest sent after the restart")
        time.sleep(2)  # anything sent twice would arrive now
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)

    received = Counter(to for message in sink.messages() for to in message["to"])
    twice = {email: n for email, n in received.items() if n > 1}
    missing = set(emails) - set(received)
    assert not twice, f"sent more than once: {sorted(twice)[:10]}"
    # The one documented gap: a pool process killed after its hand-over mark committed but before its
    # final "." left loses that one email, which the reconcile (rightly unable to tell) assumed delivered.
    # It was seen twice in about fourteen kills, always the email in flight; anything else missing fails.
    assumed = {r.email for r in reconciled if not r.resent}
    assert missing <= assumed, f"never sent and never handed over: {sorted(missing - assumed)[:10]}"
    assert len(missing) <= POOL_PROCESSES, f"never sent: {sorted(missing)}"
    assert len(received) >= SUBSCRIBERS - POOL_PROCESSES
    assert reconciled, "nothing was reconciled, so the kill did not interrupt a send"
    assert all(r.resent or "assumed delivered" in r.explanation for r in reconciled)
    with services.sessions() as session:
        statuses = Counter(session.scalars(select(Digest.status)).all())
        message_ids = session.scalars(select(Digest.message_id)).all()
    assert statuses == {DigestStatus.SENT: SUBSCRIBERS}
    assert len(set(message_ids)) == SUBSCRIBERS
    print(
        f"killed after {at_kill} emails; reconciled {len(reconciled)} "
        f"({sum(r.resent for r in reconciled)} resent, "
        f"{sum(not r.resent for r in reconciled)} assumed delivered)"
    )
    services.close()
