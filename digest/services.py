"""What a process needs to do its work, built once from `Settings` at start-up and passed in.

Nothing here is created at import time, so each test builds its own against its own database and outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Settings
from digest.db import make_engine, make_sessionmaker
from digest.mail.links import Links

if TYPE_CHECKING:
    from digest.ingest.fetching import HttpClient
    from digest.mail.dkim import DkimSigner
    from digest.mail.ratelimit import RateLimiter
    from digest.mail.render import Renderer
    from digest.mail.transport import Mailer


class Dispatcher(Protocol):
    """Queues background work. Callers invoke it only after the transaction that made the work commits."""

    def send_digests(self, digest_ids: Sequence[int]) -> None: ...

    def send_confirmation(self, subscriber_id: int) -> None: ...

    def retrain(self, subscriber_id: int) -> None:
        """A subscriber's votes changed: bring their learned model up to date before the next run."""
        ...


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def build(cls, settings: Settings) -> Services:
        engine = make_engine(settings.database_url)
        return cls(settings=settings, engine=engine, sessions=make_sessionmaker(engine))

    @cached_property
    def links(self) -> Links:
        return Links(self.settings)

    @cached_property
    def renderer(self) -> Renderer:
        from digest.mail.render import Renderer

        return Renderer.default(organisation=self.settings.organisation)

    @cached_property
    def mailer(self) -> Mailer:
        from digest.mail.transport import make_mailer

        return make_mailer(self.settings)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        from digest.mail.ratelimit import make_rate_limiter

        return make_rate_limiter(self.settings)

    @cached_property
    def dkim(self) -> DkimSigner | None:
        from digest.mail.dkim import DkimSigner

        return DkimSigner.from_settings(self.settings)

    @cached_property
    def http(self) -> HttpClient:
        from digest.ingest.fetching import HttpClient, default_user_agent

        contact = parseaddr(self.settings.mail_from)[1]
        return HttpClient(user_agent=default_user_agent(contact=contact, version=package_version()))

    def close(self) -> None:
        if "http" in self.__dict__:
            self.http.close()
        self.engine.dispose()


def package_version() -> str:
    try:
        return version("digest")
    except PackageNotFoundError:
        return "dev"
