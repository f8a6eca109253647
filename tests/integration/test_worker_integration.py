"""Production mode for real: PostgreSQL, Redis as the broker, a separate `celery worker` process, SMTP."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import ROOT, SmtpSink
from tests.support.workers import BIN, TOPICS, production_environment

pytestmark = pytest.mark.integration


@pytest.fixture
def production_env(tmp_path: Path, postgres_url: str, smtp_sink: SmtpSink) -> dict[str, str]:
    return production_environment(tmp_path, postgres_url, smtp_sink.url)


def digest_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "digest"), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"digest {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def worker(production_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "celery"), "-A", "workers.app", "worker", "--pool=solo", "--loglevel=INFO"],
        env=production_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_a_worker_process_sends_the_days_digests_over_redis(
    production_env: dict[str, str],
    worker: subprocess.Popen[bytes],
    smtp_sink: SmtpSink,
    shared_listings: list[Path],
    tmp_path: Path,
) -> None:
    env = production_env
    assert "upgraded" in digest_cli(env, "init-db")
    assert "already at" in digest_cli(env, "init-db")
    ingested = digest_cli(env, "ingest", *map(str, shared_listings))
    new = re.search(r"(\d+) new, \d+ updated, \d+ duplicate, 0 rejected", ingested)
    assert new and int(new.group(1)) > 700, ingested
    for email, topics in TOPICS.items():
        digest_cli(env, "subscribe", email, "--topics", topics, "--confirmed")

    queued = digest_cli(env, "run", "--date", "2026-11-23")
    assert "Queued 3 digest(s)" in queued, queued
    wait_for(lambda: len(smtp_sink.messages) >= 3, 60, "three digests at the SMTP sink")
    time.sleep(1)
    assert sorted(str(m["To"]) for m in smtp_sink.messages) == sorted(TOPICS)
    assert worker.poll() is None, (tmp_path / "worker.log").read_text()

    rerun = digest_cli(env, "run", "--date", "2026-11-23")
    assert "0 sent" in rerun and "3 already sent" in rerun, rerun
    time.sleep(2)
    assert len(smtp_sink.messages) == 3
