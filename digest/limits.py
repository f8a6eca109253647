"""How often one client and one address may use the subscribe form.

Fixed windows are enough here: the limits only need to keep someone from using the form to mail a
stranger over and over, or to probe many addresses from one machine. With a Redis broker the counters
live in Redis, so every web process shares them; without one there is a single process and a dictionary
does. A request over either limit gets the same answer as any other, and sends nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from digest.config import Settings

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600


class Counter(Protocol):
    def hit(self, key: str, window_seconds: int) -> int:
        """Count one more use of `key` in the current window and return the count so far."""
        ...

    def peek(self, key: str, window_seconds: int) -> int:
        """The count of `key` in the current window, without adding to it."""
        ...


class MemoryCounter:
    """Counts in this process; all keys share the window boundaries, so a new window clears them all."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._window: int | None = None
        self._counts: dict[str, int] = {}

    def hit(self, key: str, window_seconds: int) -> int:
        window = int(self._clock() // window_seconds)
        with self._lock:
            if window != self._window:
                self._window = window
                self._counts = {}
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
            return count

    def peek(self, key: str, window_seconds: int) -> int:
        window = int(self._clock() // window_seconds)
        with self._lock:
            return self._counts.get(key, 0) if window == self._window else 0


class RedisCounter:
    """INCR on a key named after the window, which expires shortly after the window ends."""

    def __init__(self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock

    def hit(self, key: str, window_seconds: int) -> int:
        window = int(self._clock() // window_seconds)
        name = f"{self.prefix}:{key}:{window}"
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, window_seconds + 60)
        count, _ = pipe.execute()
        return int(count)

    def peek(self, key: str, window_seconds: int) -> int:
        window = int(self._clock() // window_seconds)
        value = self.client.get(f"{self.prefix}:{key}:{window}")
        return int(value) if value is not None else 0


def client_key(client_ip: str) -> str:
    """One client: an IPv4 address, or an IPv6 /64 (a host or household usually holds a whole one)."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _fingerprint(value: str) -> str:
    """Keys name a hash, so the counters (and Redis) never hold an address or an IP in the clear."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


@dataclass
class SubscribeLimits:
    """Subscribe requests allowed per client IP and per address in each window."""

    counter: Counter
    per_ip: int = 10
    per_address: int = 3
    window_seconds: int = WINDOW_SECONDS

    def allow(self, client_ip: str, address: str) -> bool:
        """Count the request against both limits; False when either is exceeded.

        If the counters cannot be reached the request is let through: the per-address throttle on
        `Subscriber.confirmation_sent_at` still keeps any one mailbox from being flooded.
        """
        try:
            by_ip = self.counter.hit(f"ip:{_fingerprint(client_key(client_ip))}", self.window_seconds)
            by_address = self.counter.hit(f"address:{_fingerprint(address)}", self.window_seconds)
        except redis.RedisError:
            log.warning("subscribe rate limit unavailable; letting the request through", exc_info=True)
            return True
        if by_ip > self.per_ip:
            log.warning("subscribe limit: %d requests this hour from one client IP", by_ip)
            return False
        if by_address > self.per_address:
            log.warning("subscribe limit: %d requests this hour for one address", by_address)
            return False
        return True


@dataclass
class FailedLogins:
    """Wrong admin passwords allowed per client in each window; past that, even the right one waits.

    Blocking before the password is checked matters: answering a right guess while refusing wrong ones
    would let guessing go on at full speed.
    """

    counter: Counter
    allowed: int = 10
    window_seconds: int = 15 * 60

    def _key(self, client_ip: str) -> str:
        return f"admin-failed:{_fingerprint(client_key(client_ip))}"

    def blocked(self, client_ip: str) -> bool:
        try:
            return self.counter.peek(self._key(client_ip), self.window_seconds) >= self.allowed
        except redis.RedisError:
            log.warning("admin login limit unavailable; letting the request through", exc_info=True)
            return False

    def failed(self, client_ip: str) -> None:
        try:
            count = self.counter.hit(self._key(client_ip), self.window_seconds)
        except redis.RedisError:
            log.warning("admin login limit unavailable", exc_info=True)
            return
        if count >= self.allowed:
            log.warning("admin login: %d wrong passwords from one client; blocking it for a while", count)


def _counter(settings: Settings, purpose: str) -> Counter:
    url = settings.broker_url
    if url and url.startswith(("redis://", "rediss://")):
        # One quick try: a request waits on this, and the counters failing open costs little.
        client = redis.Redis.from_url(
            url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        return RedisCounter(client, prefix=f"digest:{purpose}:{settings.queue}")
    return MemoryCounter()


def default_failed_logins(settings: Settings) -> FailedLogins:
    return FailedLogins(_counter(settings, "admin-limit"))


def default_limits(settings: Settings) -> SubscribeLimits:
    url = settings.broker_url
    if url and url.startswith(("redis://", "rediss://")):
        # One quick try: a request waits on this, and the counters failing open costs little (see `allow`).
        client = redis.Redis.from_url(
            url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        return SubscribeLimits(RedisCounter(client, prefix=f"digest:subscribe-limit:{settings.queue}"))
    return SubscribeLimits(MemoryCounter())
