"""The send-rate cap: exact waits from the in-process bucket, and a Redis bucket shared across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from digest.config import get_settings
from digest.mail.ratelimit import (
    MAX_SLEEP_SECONDS,
    LocalTokenBucket,
    NoLimit,
    RateLimitUnavailable,
    RedisTokenBucket,
    make_rate_limiter,
)
from tests.support.env import REDIS_URL, ROOT, free_port


class FakeTime:
    """A clock that only moves when the code under test sleeps, so waits can be checked exactly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The most events in any half-open window [t, t + width) that starts at an event."""
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + width:
            j += 1
        best = max(best, j - i)
    return best


def test_max_in_window_counts_a_sliding_window() -> None:
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.2, 1.3, 1.5, 5.0]) == 5  # 0.5 up to 1.3; 1.5 is out
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([]) == 0


# --- in-process bucket -------------------------------------------------------------------------------


def test_no_limit_never_waits() -> None:
    limiter = NoLimit()
    assert [limiter.acquire() for _ in range(1000)] == [0.0] * 1000


def test_local_bucket_grants_the_burst_at_once_then_exactly_rate_per_second() -> None:
    fake = FakeTime()
    bucket = LocalTokenBucket(rate=4, burst=3, clock=fake.clock, sleep=fake.sleep)

    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert fake.sleeps == []
    start = fake.now

    waits = [bucket.acquire() for _ in range(8)]
    assert waits == pytest.approx([0.25] * 8)
    assert fake.sleeps == pytest.approx(waits)
    assert fake.now - start == pytest.approx(2.0)  # 8 messages at 4/s


def test_local_bucket_refills_in_proportion_to_idle_time_but_never_beyond_burst() -> None:
    fake = FakeTime()
    bucket = LocalTokenBucket(rate=2, burst=3, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        bucket.acquire()

    fake.now += 0.2  # 0.4 of a token has come back: the next one is 0.3 s away
    assert bucket.acquire() == pytest.approx(0.3)

    fake.now += 3600  # idle for an hour: only `burst` messages go out without waiting
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5)


def test_local_bucket_defaults_burst_to_the_rate_and_at_least_one() -> None:
    assert LocalTokenBucket(rate=10).burst == 10
    assert LocalTokenBucket(rate=0.2).burst == 1
    with pytest.raises(ValueError, match="rate"):
        LocalTokenBucket(rate=0)
    with pytest.raises(ValueError, match="burst"):
        LocalTokenBucket(rate=5, burst=0.5)


def test_local_bucket_is_shared_by_threads() -> None:
    rate, threads, each = 200.0, 4, 25
    bucket = LocalTokenBucket(rate=rate, burst=1)
    grants: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(each):
            bucket.acquire()
            with lock:
                grants.append(time.monotonic())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.monotonic()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=30)

    assert len(grants) == threads * each
    # 100 messages with one token in hand need 99 refills at 200/s, whichever thread sends them.
    assert max(grants) - start >= (threads * each - 1) / rate - 0.01


# --- Redis bucket ------------------------------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed for this test (`make test` starts it): {exc}")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def bucket_key(redis_client: redis.Redis) -> Iterator[str]:
    key = f"digest:test:send-rate:{uuid.uuid4().hex}"
    try:
        yield key
    finally:
        redis_client.delete(key)


@pytest.mark.integration
def test_redis_bucket_grants_the_burst_then_asks_to_wait_one_interval(
    redis_client: redis.Redis, bucket_key: str
) -> None:
    bucket = RedisTokenBucket(redis_client, bucket_key, rate=10, burst=3)

    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.try_acquire()
    assert 0.05 < wait <= 0.1 + 0.001  # about 1/rate, less the little time the calls above took
    assert bucket.try_acquire() == pytest.approx(wait, abs=0.01)  # asking took no token

    time.sleep(wait)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() > 0


@pytest.mark.integration
def test_redis_bucket_acquire_blocks_for_the_refill(redis_client: redis.Redis, bucket_key: str) -> None:
    bucket = RedisTokenBucket(redis_client, bucket_key, rate=20, burst=2)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == 0.0

    start = time.monotonic()
    waited = bucket.acquire()
    elapsed = time.monotonic() - start
    assert 0.02 < waited <= 0.06
    assert elapsed >= waited


@pytest.mark.integration
def test_redis_bucket_expires_when_abandoned(redis_client: redis.Redis, bucket_key: str) -> None:
    bucket = RedisTokenBucket(redis_client, bucket_key, rate=5, burst=5)
    bucket.try_acquire()
    ttl = redis_client.pttl(bucket_key)
    assert isinstance(ttl, int)
    assert 55_000 < ttl <= 60_000
    assert set(redis_client.hkeys(bucket_key)) == {b"tokens", b"ts"}

    slow = RedisTokenBucket(redis_client, bucket_key, rate=0.01, burst=2)  # refills in 200 s
    assert slow.ttl_ms == 600_000


@pytest.mark.integration
def test_redis_bucket_sleeps_at_most_a_second_at_a_time(redis_client: redis.Redis, bucket_key: str) -> None:
    """A rate raised by the operator (or a bucket reset) must be noticed within a second, not after a
    long sleep computed from the old rate."""
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        redis_client.hset(bucket_key, "tokens", "1")  # as if the rate had just been raised

    bucket = RedisTokenBucket(redis_client, bucket_key, rate=0.1, burst=1, sleep=sleep)
    assert bucket.acquire() == 0.0
    assert bucket.try_acquire() > 9  # 10 s until the next token at the old rate
    assert bucket.acquire() == MAX_SLEEP_SECONDS
    assert naps == [MAX_SLEEP_SECONDS]


# Each child waits for a common start time, then takes tokens as fast as the bucket allows.
CHILD = """
import json, sys, time
import redis
from digest.mail.ratelimit import RedisTokenBucket
url, key, rate, burst, count, start_at = sys.argv[1:]
bucket = RedisTokenBucket(redis.Redis.from_url(url), key, rate=float(rate), burst=float(burst))
bucket.client.ping()  # import and connect before the start line, not after it
time.sleep(max(0.0, float(start_at) - time.time()))
grants = []
for _ in range(int(count)):
    bucket.acquire()
    grants.append(time.time())
print(json.dumps(grants))
"""


@pytest.mark.integration
def test_redis_bucket_caps_the_rate_across_processes(redis_client: redis.Redis, bucket_key: str) -> None:
    rate, burst, processes, each = 20, 5, 3, 30
    redis_client.ping()
    start_at = time.time() + 2.0
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                REDIS_URL,
                bucket_key,
                str(rate),
                str(burst),
                str(each),
                str(start_at),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    grants: list[float] = []
    per_child: list[int] = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        times = json.loads(out)
        per_child.append(len(times))
        grants.extend(times)

    assert per_child == [each] * processes
    assert len(grants) == processes * each
    assert max_in_window(grants) <= rate + burst + 1
    # The first `burst` go at once; the other 85 need 85 refills at 20/s, shared by all three.
    assert max(grants) - min(grants) >= (processes * each - burst) / rate - 0.1


# --- choosing a limiter ------------------------------------------------------------------------------


def _settings(tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "DIGEST_DATA_DIR": str(tmp_path),
        "DIGEST_SECRET_KEY": "test-secret-key-that-is-long-enough",
        **env,
    }


def test_no_rate_means_no_limit(tmp_path: Path) -> None:
    settings = get_settings(_settings(tmp_path, DIGEST_BROKER_URL=REDIS_URL))
    assert settings.send_rate == 0
    assert isinstance(make_rate_limiter(settings), NoLimit)


def test_a_redis_broker_means_a_shared_bucket_per_queue(tmp_path: Path) -> None:
    settings = get_settings(
        _settings(tmp_path, DIGEST_SEND_RATE="10", DIGEST_BROKER_URL=REDIS_URL, DIGEST_QUEUE="mail-eu")
    )
    limiter = make_rate_limiter(settings)
    assert isinstance(limiter, RedisTokenBucket)
    assert limiter.key == "digest:send-rate:mail-eu"
    assert limiter.rate == 10
    assert limiter.burst == 10
    assert limiter.client.connection_pool.connection_kwargs["db"] == 15


@pytest.mark.parametrize("broker", [None, "memory://localhost"])
def test_without_redis_the_bucket_is_in_process(tmp_path: Path, broker: str | None) -> None:
    env = _settings(tmp_path, DIGEST_SEND_RATE="2.5")
    if broker:
        env["DIGEST_BROKER_URL"] = broker
    limiter = make_rate_limiter(get_settings(env))
    assert isinstance(limiter, LocalTokenBucket)
    assert limiter.rate == 2.5
    assert limiter.burst == 2.5


def test_services_build_the_limiter_once(tmp_path: Path) -> None:
    from digest.services import Services

    services = Services.build(get_settings(_settings(tmp_path, DIGEST_SEND_RATE="3")))
    try:
        assert isinstance(services.rate_limiter, LocalTokenBucket)
        assert services.rate_limiter is services.rate_limiter
    finally:
        services.close()


def test_unreachable_redis_is_an_error_not_an_unlimited_send(tmp_path: Path) -> None:
    port = free_port()
    settings = get_settings(
        _settings(tmp_path, DIGEST_SEND_RATE="10", DIGEST_BROKER_URL=f"redis://:hunter2@127.0.0.1:{port}/15")
    )
    limiter = make_rate_limiter(settings)  # connects lazily: a worker may start before Redis does
    assert isinstance(limiter, RedisTokenBucket)

    with pytest.raises(RateLimitUnavailable) as caught:
        limiter.acquire()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "digest:send-rate:digest" in message
    assert "hunter2" not in message
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
