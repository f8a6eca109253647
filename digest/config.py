"""Settings, read once from the environment at start-up and passed to whatever needs them.

Every variable has an embedded default so `digest` runs with no server at all: SQLite in the data
dir, Celery tasks run eagerly in-process, and emails land as `.eml` files in the outbox.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str | None
    smtp_url: str | None
    base_url: str
    secret_key: str = field(repr=False)
    mail_from: str
    # Who runs this service ("Example Lab"): named in the From header and in every email's footer.
    organisation: str = ""
    digest_size: int = 10
    first_digest_lookback_days: int = 7
    # New subscribers' delivery hour and time zone until they choose their own.
    default_send_hour: int = 6
    default_timezone: str = "UTC"
    queue: str = "digest"
    # Messages per second across every worker (a shared token bucket in Redis); 0 means no cap.
    send_rate: float = 0.0
    # A temporary failure is retried after base, 2×base, 4×base... seconds, up to max_attempts sends.
    retry_base_seconds: int = 300
    max_attempts: int = 5
    # This many digests in a row that never got through (4xx until we gave up) suppress the address.
    soft_bounce_limit: int = 3
    # How often the beat claims due subscribers and sends what is ready.
    tick_seconds: int = 120
    # A batch claimed for sending but not finished after this long is reconciled by the next tick.
    send_lease_seconds: int = 900
    # DKIM signing, when a private key file is given.
    dkim_key_file: Path | None = None
    dkim_selector: str = "digest"
    list_id: str = ""
    # The admin pages are off unless a password is set.
    admin_password: str | None = field(default=None, repr=False)
    # /metrics (Prometheus) answers only requests bearing this token; without one it is not served.
    metrics_token: str | None = field(default=None, repr=False)
    # Days arXiv announces nothing beyond weekends and the holidays `digest.ingest.health` knows.
    extra_holidays: frozenset[date] = frozenset()
    # The proxies whose X-Forwarded-For is believed (addresses or networks); the client is the right-most
    # entry not among them. Rate limits and the admin lockout count per client, so this must never be "*".
    trusted_proxies: str = "127.0.0.1,::1"
    # Host names besides the base URL's (and loopback) that requests may name, e.g. a second domain.
    allowed_hosts: tuple[str, ...] = ()
    # Each digest's envelope sender is bounces+TOKEN@ this domain (VERP), so a late bounce names its digest;
    # empty means the domain of `mail_from` (get_settings fills it in).
    bounce_domain: str = ""
    # Where the bounces to those addresses land: maildir:/path, imap://... or imaps://...; None: not read.
    # Not in the repr: an IMAP URL carries a password.
    bounce_mailbox: str | None = field(default=None, repr=False)

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def eager(self) -> bool:
        """Without a broker, Celery tasks run in the calling process."""
        return self.broker_url is None

    @property
    def mail_domain(self) -> str:
        return parseaddr(self.mail_from)[1].rpartition("@")[2] or "localhost"

    @property
    def list_id_header(self) -> str:
        """RFC 2919 List-Id: lets mail clients and filters recognise every digest as one list."""
        return self.list_id or f"Paper digest <digest.{self.mail_domain}>"


def _positive_int(env: Mapping[str, str], name: str, default: int, upper: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not 0 <= value <= upper:
        raise ConfigError(f"{name} must be between 0 and {upper}, got {value}")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float, upper: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not 0 <= value <= upper:
        raise ConfigError(f"{name} must be between 0 and {upper}, got {value}")
    return value


def _timezone(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name} must be an IANA time zone such as Europe/Berlin; got {value!r}") from None
    return value


def _dkim_key(env: Mapping[str, str]) -> Path | None:
    raw = env.get("DIGEST_DKIM_KEY_FILE")
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"DIGEST_DKIM_KEY_FILE names {raw!r}, which is not a readable file")
    return path


def _load_or_create_secret(data_dir: Path) -> str:
    """Keep one generated key per data dir, so links in emails already sent stay valid after a restart."""
    path = data_dir / "secret_key"
    if path.exists():
        key = path.read_text(encoding="ascii").strip()
        if key:
            return key
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    try:
        # link() fails if another process won the race; then its key is the one to use.
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
    finally:
        tmp.unlink()
    return key


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(
            f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}; "
            f"got {value!r}"
        )
    return value


def _dates(env: Mapping[str, str], name: str) -> frozenset[date]:
    days = set()
    for part in (env.get(name) or "").replace(";", ",").split(","):
        if part.strip():
            try:
                days.add(date.fromisoformat(part.strip()))
            except ValueError:
                raise ConfigError(
                    f"{name} must be ISO dates separated by commas; {part.strip()!r} is not one"
                ) from None
    return frozenset(days)


def _queue_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", value):
        raise ConfigError(f"DIGEST_QUEUE must be letters, digits and _.:- only; got {value!r}")
    return value


def _admin_password(env: Mapping[str, str]) -> str | None:
    value = env.get("DIGEST_ADMIN_PASSWORD") or None
    if value is not None and len(value) < 12:
        raise ConfigError("DIGEST_ADMIN_PASSWORD must be at least 12 characters long")
    return value


def _trusted_proxies(env: Mapping[str, str]) -> str:
    raw = env.get("DIGEST_TRUSTED_PROXIES") or "127.0.0.1,::1"
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    for entry in entries:
        if entry == "*":
            raise ConfigError(
                "DIGEST_TRUSTED_PROXIES cannot be '*': any client could then name any address in "
                "X-Forwarded-For and escape the rate limits or lock someone else out; list your proxies"
            )
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"DIGEST_TRUSTED_PROXIES: {entry!r} is not an IP address or network (such as 10.0.0.0/8)"
            ) from None
    return ",".join(entries)


def _metrics_token(env: Mapping[str, str]) -> str | None:
    value = env.get("DIGEST_METRICS_TOKEN") or None
    if value is not None and (len(value) < 16 or not value.isprintable() or " " in value):
        raise ConfigError("DIGEST_METRICS_TOKEN must be at least 16 printable characters without spaces")
    return value


_ORGANISATION_MAX_CHARS = 80


def _organisation(env: Mapping[str, str]) -> str:
    """Goes into the From header, so a line break or other control character could forge headers."""
    value = (env.get("DIGEST_ORGANISATION") or "").strip()
    if any(not c.isprintable() for c in value):
        raise ConfigError(
            "DIGEST_ORGANISATION must be a name on one line, without line breaks, tabs or other invisible "
            f"characters; "
            f"got {value!r}"
        )
    if len(value) > _ORGANISATION_MAX_CHARS:
        raise ConfigError(
            f"DIGEST_ORGANISATION must be at most {_ORGANISATION_MAX_CHARS} characters, got {len(value)}"
        )
    return value


def _selector(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})", value):
        raise ConfigError(f"DIGEST_DKIM_SELECTOR must be a DNS label such as 'digest2026'; got {value!r}")
    return value


def _bounce_domain(env: Mapping[str, str], mail_from: str) -> str:
    raw = (env.get("DIGEST_BOUNCE_DOMAIN") or "").strip().lower().rstrip(".")
    if not raw:
        return parseaddr(mail_from)[1].rpartition("@")[2].lower() or "localhost"
    label = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    if len(raw) > 253 or not re.fullmatch(rf"{label}(?:\.{label})*", raw):
        raise ConfigError(f"DIGEST_BOUNCE_DOMAIN must be a domain name such as 'example.org'; got {raw!r}")
    return raw


def _bounce_mailbox(env: Mapping[str, str]) -> str | None:
    from digest.bounces.mailbox import parse_location, redacted

    value = (env.get("DIGEST_BOUNCE_MAILBOX") or "").strip() or None
    if value is not None:
        try:
            parse_location(value)
        except ValueError as exc:
            # The value may hold an IMAP password; the message shows it with the password hidden.
            raise ConfigError(f"DIGEST_BOUNCE_MAILBOX {exc}; got {redacted(value)!r}") from None
    return value


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `env` (the process environment by default)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("DIGEST_DATA_DIR") or "./var").expanduser().resolve()

    database_url = env.get("DIGEST_DATABASE_URL") or f"sqlite:///{data_dir / 'digest.sqlite3'}"
    if not database_url.startswith(("sqlite", "postgresql")):
        raise ConfigError(
            f"DIGEST_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL; got {database_url!r}"
        )

    broker_url = env.get("DIGEST_BROKER_URL") or None
    if broker_url:
        _check_url("DIGEST_BROKER_URL", broker_url, ("redis", "rediss", "memory"))

    smtp_url = env.get("DIGEST_SMTP_URL") or None
    if smtp_url:
        _check_url("DIGEST_SMTP_URL", smtp_url, ("smtp", "smtps", "smtp+starttls"))

    base_url = _check_url(
        "DIGEST_BASE_URL", env.get("DIGEST_BASE_URL") or "http://127.0.0.1:8000", ("http", "https")
    ).rstrip("/")

    mail_from = env.get("DIGEST_FROM") or "Paper digest <digest@localhost>"
    if "@" not in parseaddr(mail_from)[1]:
        raise ConfigError(
            f"DIGEST_FROM must be an email address such as 'Digest <digest@example.org>'; got {mail_from!r}"
        )

    secret_key = env.get("DIGEST_SECRET_KEY") or _load_or_create_secret(data_dir)
    if len(secret_key) < 16:
        raise ConfigError("DIGEST_SECRET_KEY must be at least 16 characters long")

    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        smtp_url=smtp_url,
        base_url=base_url,
        secret_key=secret_key,
        mail_from=mail_from,
        organisation=_organisation(env),
        digest_size=_positive_int(env, "DIGEST_SIZE", 10, 100) or 10,
        first_digest_lookback_days=_positive_int(env, "DIGEST_FIRST_LOOKBACK_DAYS", 7, 365),
        default_send_hour=_positive_int(
            env, "DIGEST_SEND_HOUR", _positive_int(env, "DIGEST_SEND_HOUR_UTC", 6, 23), 23
        ),
        default_timezone=_timezone(env, "DIGEST_TIMEZONE", "UTC"),
        queue=_queue_name(env.get("DIGEST_QUEUE") or "digest"),
        send_rate=_positive_float(env, "DIGEST_SEND_RATE", 0.0, 100_000.0),
        retry_base_seconds=_positive_int(env, "DIGEST_RETRY_BASE_SECONDS", 300, 86_400),
        max_attempts=_positive_int(env, "DIGEST_MAX_ATTEMPTS", 5, 50) or 1,
        soft_bounce_limit=_positive_int(env, "DIGEST_SOFT_BOUNCE_LIMIT", 3, 100) or 1,
        tick_seconds=_positive_int(env, "DIGEST_TICK_SECONDS", 120, 3600) or 1,
        send_lease_seconds=_positive_int(env, "DIGEST_SEND_LEASE_SECONDS", 900, 86_400) or 1,
        dkim_key_file=_dkim_key(env),
        dkim_selector=_selector(env.get("DIGEST_DKIM_SELECTOR") or "digest"),
        list_id=(env.get("DIGEST_LIST_ID") or "").strip(),
        admin_password=_admin_password(env),
        metrics_token=_metrics_token(env),
        trusted_proxies=_trusted_proxies(env),
        allowed_hosts=tuple(
            h.strip() for h in (env.get("DIGEST_ALLOWED_HOSTS") or "").split(",") if h.strip()
        ),
        extra_holidays=_dates(env, "DIGEST_EXTRA_HOLIDAYS"),
        bounce_domain=_bounce_domain(env, mail_from),
        bounce_mailbox=_bounce_mailbox(env),
    )
