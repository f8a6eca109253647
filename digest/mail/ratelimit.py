"""One send-rate cap for the whole deployment, however many worker processes share the queue.

Mail providers throttle or block senders by messages per second from the sending account, not per
worker, so the cap must be global: with a Redis broker the token bucket lives in Redis and every
worker draws from it. Without Redis (the embedded mode) there is only one process, so an
in-process bucket is enough.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import redis

if TYPE_CHECKING:
    from digest.config import Settings

# Never sleep longer than this in one go, so a worker notices a lowered wait (another worker's rate
# change, a deleted key) within a second instead of oversleeping on a stale estimate.
MAX_SLEEP_SECONDS = 1.0

# Redis keeps an abandoned bucket at least this long; see `RedisTokenBucket.ttl_ms`.
MIN_TTL_SECONDS = 60


class RateLimiter(Protocol):
    def acquire(self) -> float:
        """Block until one message may be sent and return the seconds spent waiting, for logs and metrics."""
        ...


class RateLimitUnavailable(RuntimeError):
    """The shared bucket cannot be reached; raised rather than sending uncapped, which would risk the
    provider throttling or blocking the whole sending account."""


class NoLimit:
    """`send_rate = 0`: the operator chose no cap, so callers need no special case."""

    def acquire(self) -> float:
        return 0.0


def _check(rate: float, burst: float | None) -> float:
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive number of messages per second, got {rate!r}")
    burst = max(1.0, rate) if burst is None else float(burst)
    # Below one token the bucket could never hold a whole message, and every acquire would wait forever.
    if not burst >= 1 or math.isinf(burst):
        raise ValueError(f"burst must be at least 1, got {burst!r}")
    return burst


class LocalTokenBucket:
    """For the embedded mode, where all sending happens in one process but possibly on several threads.

    A caller that finds the bucket empty reserves the next token (the count goes negative) and then
    sleeps outside the lock; waiting callers are thus served in arrival order at exactly `rate` per
    second, and none of them has to poll.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.burst = _check(rate, burst)
        self.rate = float(rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    def acquire(self) -> float:
        with self._lock:
            now = self._clock()
            # max(): a clock that steps back (only possible with an injected one) must not drain tokens.
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate) - 1.0
            self._updated = now
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


# KEYS[1]: the bucket hash. ARGV: rate (tokens/s), burst (tokens), ttl (ms).
# Returns 0 after taking a token, or the whole milliseconds until one will be there (taking none).
# Times are Redis's own clock in microseconds, so workers with skewed clocks still agree; a double
# holds today's microsecond timestamps exactly (< 2^53). Values are written with string.format
# because Redis would otherwise turn Lua numbers into integers or short decimals.
_TOKEN_BUCKET_LUA = """
if redis.replicate_commands then
  -- Redis < 5 refuses writes after TIME unless effects replication is on; later versions ignore this.
  redis.replicate_commands()
end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tokens = burst
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if state[1] and state[2] then
  local elapsed = now - tonumber(state[2])
  if elapsed < 0 then
    elapsed = 0
  end
  tokens = math.min(burst, tonumber(state[1]) + elapsed * rate / 1000000)
end
local wait = 0
-- The epsilon keeps rounding error from turning a token that is due into one more millisecond of wait.
if tokens >= 1 - 1e-9 then
  tokens = math.max(0, tokens - 1)
else
  wait = math.max(1, math.ceil((1 - tokens) * 1000 / rate))
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ttl)
return wait
"""


def _where(client: redis.Redis) -> str:
    """Where the client points, for error messages; built from the parsed options so no password leaks."""
    options = client.connection_pool.connection_kwargs
    place = options.get("path") or f"{options.get('host', '?')}:{options.get('port', '?')}"
    return f"redis at {place} db {options.get('db', 0)}"


class RedisTokenBucket:
    """The bucket for several workers: one Redis hash, refilled and drawn from by a single Lua script.

    Doing refill and take in one script makes them atomic across processes and machines, and lets
    Redis's clock be the only clock. The script never reserves a token it cannot grant, so a worker
    that gives up or dies while waiting costs the others nothing.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate: float,
        burst: float | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.burst = _check(rate, burst)
        self.rate = float(rate)
        self.client = client
        self.key = key
        self._sleep = sleep
        self._script = client.register_script(_TOKEN_BUCKET_LUA)

    @property
    def ttl_ms(self) -> int:
        """Long enough that an expiring bucket would have been full anyway, so expiry never grants
        extra tokens; short enough that a bucket nobody uses (a renamed queue) does not linger."""
        return 1000 * max(MIN_TTL_SECONDS, math.ceil(3 * self.burst / self.rate))

    def try_acquire(self) -> float:
        """Take a token if there is one (0.0), else tell the seconds until there will be, without waiting."""
        try:
            wait_ms = self._script(keys=[self.key], args=[repr(self.rate), repr(self.burst), self.ttl_ms])
        except redis.RedisError as exc:
            raise RateLimitUnavailable(
                f"the send-rate limit lives in {_where(self.client)} under key {self.key!r}, "
                f"which cannot be used ({exc}); not sending rather than sending uncapped"
            ) from exc
        return int(wait_ms) / 1000.0

    def acquire(self) -> float:
        waited = 0.0
        while (wait := self.try_acquire()) > 0:
            pause = min(wait, MAX_SLEEP_SECONDS)
            self._sleep(pause)
            waited += pause
        return waited


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """Pick the bucket that is shared by exactly the processes that share the queue.

    The Redis client connects lazily, so a worker starts even while Redis is down; the first send
    then fails with `RateLimitUnavailable` instead of going out uncapped.
    """
    if settings.send_rate <= 0:
        return NoLimit()
    url = settings.broker_url
    if url and url.startswith(("redis://", "rediss://")):
        return RedisTokenBucket(
            redis.Redis.from_url(url), key=f"digest:send-rate:{settings.queue}", rate=settings.send_rate
        )
    return LocalTokenBucket(settings.send_rate)
