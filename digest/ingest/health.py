"""Is a source quiet, or broken? Telling the two apart is what keeps a digest trustworthy.

arXiv announces nothing on weekends and on its holidays, so silence from an arXiv feed is measured in
business days; a watched folder or a generic feed is measured in calendar days. A source is stale when
it has produced nothing new for longer than its `quiet_days`, and failing when its last fetch errored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.models import Fetch, Source

BUSINESS_DAY_KINDS = frozenset({"arxiv_api", "arxiv_rss", "hf_daily"})


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def arxiv_holidays(years: Iterable[int]) -> frozenset[date]:
    """Days arXiv has historically announced nothing on besides weekends (US federal holidays it observes).

    arXiv publishes its exact schedule each year; `DIGEST_EXTRA_HOLIDAYS` adds the days not listed here.
    """
    days: set[date] = set()
    for year in years:
        days |= {
            date(year, 1, 1),
            date(year, 6, 19),
            date(year, 7, 4),
            _nth_weekday(year, 11, 3, 4),  # Thanksgiving: fourth Thursday of November
            date(year, 12, 25),
        }
    return frozenset(days)


def silent_days(since: date, until: date, *, business: bool, holidays: frozenset[date]) -> int:
    """Days after `since` up to and including `until` on which the source should have had something."""
    count = 0
    day = since + timedelta(days=1)
    while day <= until:
        if not business or (day.weekday() < 5 and day not in holidays):
            count += 1
        day += timedelta(days=1)
    return count


@dataclass(frozen=True)
class SourceHealth:
    name: str
    kind: str
    enabled: bool
    state: str  # "ok", "stale", "failing", "never fetched", "disabled"
    last_fetch_at: datetime | None
    last_success_at: datetime | None
    last_new_at: datetime | None
    silent_days: int
    detail: str


# Over 60 lines: one verdict per source state, written as a table of cases.
def source_health(
    session: Session, now: datetime, extra_holidays: frozenset[date] = frozenset()
) -> list[SourceHealth]:
    """One query per kind of fact, for all sources at once."""
    sources = session.scalars(select(Source).order_by(Source.name)).all()
    last_fetch = dict(
        session.execute(select(Fetch.source_id, func.max(Fetch.started_at)).group_by(Fetch.source_id)).all()
    )
    last_success = dict(
        session.execute(
            select(Fetch.source_id, func.max(Fetch.finished_at))
            .where(Fetch.error.is_(None))
            .group_by(Fetch.source_id)
        ).all()
    )
    last_new = dict(
        session.execute(
            select(Fetch.source_id, func.max(Fetch.finished_at))
            .where(Fetch.new > 0)
            .group_by(Fetch.source_id)
        ).all()
    )
    latest_errors = dict(
        session.execute(
            select(Fetch.source_id, Fetch.error).where(
                Fetch.id.in_(select(func.max(Fetch.id)).group_by(Fetch.source_id))
            )
        ).all()
    )
    holidays = arxiv_holidays(range(now.year - 1, now.year + 1)) | extra_holidays
    report = []
    for source in sources:
        business = source.kind in BUSINESS_DAY_KINDS
        produced = last_new.get(source.id)
        reference = produced or source.created_at
        silence = silent_days(reference.date(), now.date(), business=business, holidays=holidays)
        unit = "business day(s), weekends and arXiv holidays not counted" if business else "day(s)"
        error = latest_errors.get(source.id)
        if not source.enabled:
            state, detail = "disabled", "not fetched while disabled"
        elif source.id not in last_fetch:
            state, detail = "never fetched", "waiting for its first fetch"
        elif error:
            state, detail = "failing", f"last fetch failed: {error}"
        elif source.quiet_days and silence > source.quiet_days:
            state = "stale"
            since = "anything new" if produced is None else "a new listing"
            detail = f"no {since} for {silence} {unit}; expected within {source.quiet_days}"
        else:
            state = "ok"
            detail = "new listings today" if silence == 0 and produced else f"quiet for {silence} {unit}"
        report.append(
            SourceHealth(
                name=source.name,
                kind=source.kind,
                enabled=source.enabled,
                state=state,
                last_fetch_at=last_fetch.get(source.id),
                last_success_at=last_success.get(source.id),
                last_new_at=produced,
                silent_days=silence,
                detail=detail,
            )
        )
    return report
