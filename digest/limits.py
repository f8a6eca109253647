"""How often one client and one mailbox may use the subscribe form, and how often the admin login.

Every limit is a sliding window (a log of the hits in the last window), so a burst straddling a window
boundary gets no second allowance and `Retry-After` says when the oldest hit ages out. With a Redis
broker the logs live in Redis (a sorted set per key), so every web process shares them; without one
there is a single process and a dictionary does. A request over a limit gets the same answer as any
other, and sends nothing.

Limits count real mailboxes and real clients: `victim+1@` and `v.i.c.t.i.m@gmail.com` are one mailbox,
an IPv6 client is its /48 (what one customer is usually given), and an IPv4-mapped IPv6 address is the
IPv4 address it maps.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
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
DAY_SECONDS = 24 * 3600
# Providers known to ignore dots in the local part; everyone else may treat them as significant.
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


class Counter(Protocol):
    def hit(self, key: str, window_seconds: int) -> int:
        """Log one more use of `key`; the uses within the last `window_seconds`, this one included."""
        ...

    def peek(self, key: str, window_seconds: int) -> int:
        """The uses of `key` within the last `window_seconds`, without adding one."""
        ...

    def retry_after(self, key: str, window_seconds: int) -> float:
        """Seconds until the oldest use in the window ages out (0 when there is none)."""
        ...


class MemoryCounter:
    """Sliding windows in this process."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, list[float]] = {}

    def _recent(self, key: str, window_seconds: int, now: float) -> list[float]:
        recent = [t for t in self._hits.get(key, []) if t > now - window_seconds]
        if recent:
            self._hits[key] = recent
        else:
            self._hits.pop(key, None)
        return recent

    def hit(self, key: str, window_seconds: int) -> int:
        now = self._clock()
        with self._lock:
            recent = self._recent(key, window_seconds, now)
            recent.append(now)
            self._hits[key] = recent
            return len(recent)

    def peek(self, key: str, window_seconds: int) -> int:
        with self._lock:
            return len(self._recent(key, window_seconds, self._clock()))

    def retry_after(self, key: str, window_seconds: int) -> float:
        now = self._clock()
        with self._lock:
            recent = self._recent(key, window_seconds, now)
            return max(0.0, recent[0] + window_seconds - now) if recent else 0.0


class RedisCounter:
    """A sorted set per key, scored by time: old hits are trimmed on every use, and the key expires."""

    def __init__(self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock

    def hit(self, key: str, window_seconds: int) -> int:
        now = self._clock()
        name = f"{self.prefix}:{key}"
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(name, "-inf", now - window_seconds)
        pipe.zadd(name, {f"{now:.6f}:{secrets.token_hex(4)}": now})
        pipe.zcard(name)
        pipe.expire(name, window_seconds + 60)
        _, _, count, _ = pipe.execute()
        return int(count)

    def peek(self, key: str, window_seconds: int) -> int:
        now = self._clock()
        name = f"{self.prefix}:{key}"
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(name, "-inf", now - window_seconds)
        pipe.zcard(name)
        _, count = pipe.execute()
        return int(count)

    def retry_after(self, key: str, window_seconds: int) -> float:
        now = self._clock()
        oldest = self.client.zrangebyscore(
            f"{self.prefix}:{key}", now - window_seconds, "+inf", start=0, num=1, withscores=True
        )
        return max(0.0, float(oldest[0][1]) + window_seconds - now) if oldest else 0.0


def client_key(client_ip: str) -> str:
    """One client: an IPv4 address (an IPv4-mapped IPv6 one included), or an IPv6 /48."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/48", strict=False))
    return str(address)


def mailbox_key(address: str) -> str:
    """The mailbox an address reaches, for counting only: case, `+tag`, and dots where the provider
    ignores them. Addresses are stored as typed."""
    local, _, domain = address.strip().lower().rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in _DOTLESS_DOMAINS:
        local, domain = local.replace(".", ""), _DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"


def _fingerprint(value: str) -> str:
    """Keys name a hash, so the counters (and Redis) never hold an address or an IP in the clear."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


@dataclass
class SubscribeLimits:
    """Subscribe requests per client and per mailbox, and the confirmation emails they may cause.

    A request over the client's limit counts against nothing else, so nobody can use up a stranger's
    budget from a flooded client. The email budgets (per mailbox per day, and for the whole service per
    hour) are spent only when an email is actually queued.
    """

    counter: Counter
    per_ip: int = 10
    per_address: int = 3
    window_seconds: int = WINDOW_SECONDS
    emails_per_mailbox_per_day: int = 3
    emails_per_hour: int = 1000

    def allow(self, client_ip: str, address: str) -> bool:
        """Count the request against the client's limit and, if that passes, the mailbox's.

        If the counters cannot be reached the request is let through: the per-address throttle on
        `Subscriber.confirmation_sent_at` still keeps any one address from being flooded.
        """
        try:
            by_ip = self.counter.hit(f"ip:{_fingerprint(client_key(client_ip))}", self.window_seconds)
            if by_ip > self.per_ip:
                log.warning("subscribe limit: %d requests this hour from one client", by_ip)
                return False
            by_address = self.counter.hit(
                f"address:{_fingerprint(mailbox_key(address))}", self.window_seconds
            )
        except redis.RedisError:
            log.warning("subscribe rate limit unavailable; letting the request through", exc_info=True)
            return True
        if by_address > self.per_address:
            log.warning("subscribe limit: %d requests this hour for one mailbox", by_address)
            return False
        return True

    def allow_email(self, address: str) -> bool:
        """Spend one confirmation email of the mailbox's daily budget and the service's hourly one.

        Unlike the request limits this fails closed: without the counters there is no bound on what the
        form could mail, and the person at the form sees the same answer either way.
        """
        mailbox = f"mailbox-emails:{_fingerprint(mailbox_key(address))}"
        try:
            if self.counter.peek(mailbox, DAY_SECONDS) >= self.emails_per_mailbox_per_day:
                log.warning(
                    "subscribe: this mailbox had %d confirmation emails today",
                    self.emails_per_mailbox_per_day,
                )
                return False
            if self.counter.peek("all-emails", WINDOW_SECONDS) >= self.emails_per_hour:
                log.warning(
                    "subscribe: the service's %d confirmation emails this hour are spent",
                    self.emails_per_hour,
                )
                return False
            self.counter.hit(mailbox, DAY_SECONDS)
            self.counter.hit("all-emails", WINDOW_SECONDS)
        except redis.RedisError:
            log.warning("confirmation email budget unavailable; not sending", exc_info=True)
            return False
        return True


@dataclass
class FailedLogins:
    """Wrong admin passwords allowed per client in a sliding window; past that, even the right one waits.

    Blocking before the password is checked matters: answering a right guess while refusing wrong ones
    would let guessing go on at full speed. Only the client that guessed is blocked: with forwarded
    headers believed only from trusted proxies (`DIGEST_TRUSTED_PROXIES`), nobody can name another
    client's address to lock it out.
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

    def retry_after(self, client_ip: str) -> int:
        """Whole seconds until the client's oldest counted failure ages out and it may try again."""
        try:
            return max(1, round(self.counter.retry_after(self._key(client_ip), self.window_seconds)))
        except redis.RedisError:
            return self.window_seconds

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
    # One quick try against Redis: a request waits on this, and the request limits fail open (see `allow`).
    return SubscribeLimits(_counter(settings, "subscribe-limit"))
