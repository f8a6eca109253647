"""What a reader (and an operator on a reader's behalf) can do: subscribe, confirm, vote, change
preferences, read past digests. The pages, the JSON API and the command line all call these, so they
cannot drift apart; each wraps `digest.subscribers` in its transaction and queues the work that follows
only after it commits.

Nothing here knows about HTML, JSON or the terminal; the callers turn the exceptions into pages, error
bodies or messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypedDict, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from digest.db import transaction
from digest.deliver.schedule import InvalidSchedule, Schedule, schedule_of, validated
from digest.limits import SubscribeLimits
from digest.mail.digest_email import digest_context, paper_details
from digest.mail.render import trim_abstract
from digest.models import Cadence, Digest, DigestItem, DigestStatus, Listing, Subscriber, Vote
from digest.rank.portrait import Portrait, portrait
from digest.rank.preview import preview
from digest.services import Dispatcher, Services
from digest.subscribers import feedback, steering, subscriptions
from digest.subscribers.suggestions import Suggestion, suggest, topic_matches

log = logging.getLogger(__name__)

T = TypeVar("T")
HISTORY_SHOWN = 100
ARCHIVE_SHOWN = 1000
SIGNUP_CADENCES = (Cadence.DAILY, Cadence.WEEKLY)
PREVIEW_ABSTRACT = 240


class LinkGone(LookupError):
    """The signed link is genuine but names a subscriber that is no longer stored."""


class DigestNotFound(LookupError):
    """No sent digest with this id belongs to the subscriber the link names."""


@dataclass(frozen=True)
class ArchiveEntry:
    digest_id: int
    digest_date: date
    sent_at: datetime | None
    papers: int


@dataclass(frozen=True)
class DigestPage:
    """One sent digest as the site shows it: the email's own context, and the reader's votes now."""

    subscriber: Subscriber
    digest_id: int
    context: dict[str, object]
    listing_ids: dict[str, list[int]]
    votes: dict[int, Vote]


@dataclass(frozen=True)
class PreviewPaper:
    listing_id: int
    title: str
    url: str | None
    authors: list[str]
    abstract: str
    reason: str
    vote: Vote | None
    meta: str = ""
    pdf_url: str | None = None


@dataclass(frozen=True)
class PreferencesView:
    subscriber: Subscriber
    schedule: Schedule
    # None when the profile could not be read (no feature space yet, say); the page says so.
    learned: Portrait | None
    history: list[feedback.VoteEntry]


class SubscriptionRequestData(TypedDict):
    """A subscribe request after validation, as it travels to the worker that stores it (JSON)."""

    email: str
    topics: list[str]
    cadence: str
    send_hour: int
    timezone: str
    weekly_day: int


class Readers:
    def __init__(self, services: Services, dispatcher: Dispatcher, limits: SubscribeLimits) -> None:
        self.services = services
        self.dispatcher = dispatcher
        self.limits = limits
        self.links = services.links

    # Transactions and queued work -------------------------------------------------------------------
    def in_transaction(self, work: Callable[[Session], T]) -> T:
        """Run `work` in its own transaction, once more if a concurrent request inserted the same row."""
        try:
            with transaction(self.services.sessions) as session:
                return work(session)
        except IntegrityError:
            log.info("retrying after a concurrent insert", exc_info=True)
        with transaction(self.services.sessions) as session:
            return work(session)

    def reading(self, work: Callable[[Session], T]) -> T:
        with transaction(self.services.sessions) as session:
            return work(session)

    def retrain_after(self, result: feedback.VoteResult) -> None:
        """The vote is committed; its effect on the profile is worked out in the background."""
        if not result.changed:
            return
        try:
            self.dispatcher.retrain(result.subscriber_id)
        except Exception:
            # The vote is stored either way; the next run catches the model up.
            log.exception("could not queue retraining for subscriber %s", result.subscriber_id)

    # Subscribers ------------------------------------------------------------------------------------
    def subscriber(self, public_id: str) -> Subscriber:
        found = self.reading(lambda s: subscriptions.find_by_public_id(s, public_id))
        if found is None:
            raise LinkGone("this link is no longer valid")
        return found

    def request_subscription(
        self,
        *,
        email: str,
        topics: str | Sequence[str],
        cadence: str,
        send_hour: int | str,
        timezone: str,
        weekly_day: int | str,
        client_ip: str,
    ) -> None:
        """The public sign-up. Raises InvalidSubscription or InvalidSchedule for input a person can fix;
        otherwise the outcome (created, updated, throttled, rate-limited) is deliberately invisible."""
        address = subscriptions.normalize_email(email)
        topic_list = subscriptions.parse_topics(topics)
        schedule = validated(cadence, send_hour, timezone, weekly_day)
        if schedule.cadence not in SIGNUP_CADENCES:
            raise InvalidSchedule("cadence", "choose daily or weekly")
        if not self.limits.allow(client_ip, address):
            return
        request: SubscriptionRequestData = {
            "email": address,
            "topics": topic_list,
            "cadence": schedule.cadence.value,
            "send_hour": schedule.send_hour,
            "timezone": schedule.timezone,
            "weekly_day": schedule.weekly_day,
        }
        defer = getattr(self.dispatcher, "answer_subscription", None)
        if callable(defer):
            # The answer is sent before anything about the address is read or written, so its timing cannot
            # tell a stranger whether the address is new, pending, active or suppressed.
            try:
                defer(request)
            except Exception:
                log.exception("could not queue a subscribe request")
            return
        self.answer_subscription(request)

    def answer_subscription(self, request: SubscriptionRequestData) -> None:
        """Store a checked subscribe request and queue the email it calls for (the worker's half)."""
        address, topic_list = request["email"], list(request["topics"])
        schedule = validated(
            request["cadence"], request["send_hour"], request["timezone"], request["weekly_day"]
        )
        result = self.in_transaction(
            lambda s: subscriptions.request_subscription(s, address, topic_list, schedule=schedule)
        )
        if result.notice is None:
            log.info(
                "subscribe: subscriber %s was mailed within the hour, or is suppressed", result.subscriber_id
            )
            return
        if not self.limits.allow_email(address):
            return
        try:
            # The task reads the status when it runs: pending gets the confirmation link, active the
            # "already subscribed" note.
            self.dispatcher.send_confirmation(result.subscriber_id)
        except Exception:
            # An error here would only show for addresses that get mail, telling a stranger something
            # about the address; the answer stays the same and the log has it.
            log.exception(
                "could not queue the %s email for subscriber %s", result.notice, result.subscriber_id
            )

    def subscribe_as_operator(
        self, email: str, topics: str | Sequence[str], *, confirmed: bool, schedule: Schedule
    ) -> subscriptions.SubscribeResult:
        """The admin path (`digest subscribe`): no rate limit; a confirmation is mailed unless the operator
        says the owner asked directly. Raises InvalidSubscription for an address or topics it refuses."""
        result = self.in_transaction(
            lambda s: subscriptions.subscribe(s, email, topics, confirmed=confirmed, schedule=schedule)
        )
        if result.needs_confirmation:
            self.dispatcher.send_confirmation(result.subscriber_id)
        return result

    # Preferences ------------------------------------------------------------------------------------
    def preferences(self, public_id: str) -> PreferencesView:
        def load(session: Session) -> tuple[Subscriber, list[feedback.VoteEntry]] | None:
            subscriber = subscriptions.find_by_public_id(session, public_id)
            if subscriber is None:
                return None
            return subscriber, feedback.history(session, subscriber.id, HISTORY_SHOWN)

        loaded = self.reading(load)
        if loaded is None:
            raise LinkGone("this link is no longer valid")
        subscriber, history = loaded
        return PreferencesView(subscriber, schedule_of(subscriber), self.learned(subscriber.id), history)

    def learned(self, subscriber_id: int) -> Portrait | None:
        try:
            return portrait(self.services, subscriber_id)
        except Exception:
            log.exception("could not work out the learned terms of subscriber %s", subscriber_id)
            return None

    def steer(self, public_id: str, label: str, action: str | None) -> str:
        """Mute or boost one entry of the profile as the page showed it, or lift that (`action=None`);
        returns the entry's label. The terms acted on are worked out here, never taken from the form."""
        subscriber = self.subscriber(public_id)
        learned = self.learned(subscriber.id)
        if learned is None:
            raise subscriptions.InvalidSubscription(
                "term", "your profile cannot be read right now; try later"
            )
        label = label.strip()
        entries = {e.label: e for e in [*learned.likes, *learned.dislikes, *learned.adjusted]}
        entry = entries.get(label)
        if entry is None and action is not None:
            raise subscriptions.InvalidSubscription("term", f"“{label[:80]}” is not in your profile any more")
        terms = [] if entry is None else (entry.terms if entry.adjustment else entry.steered_terms)

        def work(session: Session) -> Subscriber | None:
            found = subscriptions.find_by_public_id(session, public_id)
            if found is not None:
                steering.adjust_term(session, found, label, action, terms)
            return found

        if self.in_transaction(work) is None:
            raise LinkGone("this link is no longer valid")
        return label

    def reset_learned(self, public_id: str) -> steering.ResetResult:
        result = self.in_transaction(lambda s: steering.reset_votes(s, public_id))
        if result is None:
            raise LinkGone("this link is no longer valid")
        return result

    def undo_reset(self, public_id: str) -> steering.ResetResult:
        result = self.in_transaction(lambda s: steering.undo_reset(s, public_id))
        if result is None:
            raise LinkGone("this link is no longer valid")
        if result.votes:
            try:
                self.dispatcher.retrain(result.subscriber_id)
            except Exception:
                log.exception("could not queue retraining for subscriber %s", result.subscriber_id)
        return result

    def save_preferences(  # noqa: PLR0913 - keyword-only: one per preference field
        self,
        public_id: str,
        *,
        topics: str | Sequence[str],
        cadence: str,
        send_hour: int | str,
        timezone: str,
        weekly_day: int | str,
        digest_size: int | None,
        show_trending: bool,
    ) -> Subscriber:
        """Replace the subscriber's settings; raises before changing anything when any input is wrong."""
        topic_list = subscriptions.parse_topics(topics)
        schedule = validated(cadence, send_hour, timezone, weekly_day)
        if digest_size is not None and not 1 <= digest_size <= subscriptions.MAX_DIGEST_SIZE:
            raise subscriptions.InvalidSubscription(
                "digest_size", f"must be from 1 to {subscriptions.MAX_DIGEST_SIZE} papers, not {digest_size}"
            )

        def work(session: Session) -> Subscriber | None:
            subscriber = subscriptions.update_topics(
                session, public_id, topic_list, show_trending=show_trending
            )
            if subscriber is not None:
                subscriptions.update_schedule(session, public_id, schedule, digest_size=digest_size)
            return subscriber

        saved = self.in_transaction(work)
        if saved is None:
            raise LinkGone("this link is no longer valid")
        return saved

    def set_cadence(self, public_id: str, cadence: str) -> Subscriber:
        """Pause, or resume daily or weekly, keeping the hour, zone and weekday."""

        def work(session: Session) -> Subscriber | None:
            subscriber = subscriptions.find_by_public_id(session, public_id)
            if subscriber is None:
                return None
            current = schedule_of(subscriber)
            schedule = validated(cadence, current.send_hour, current.timezone, current.weekly_day)
            return subscriptions.update_schedule(session, public_id, schedule)

        saved = self.in_transaction(work)
        if saved is None:
            raise LinkGone("this link is no longer valid")
        return saved

    # Votes ------------------------------------------------------------------------------------------
    def vote(self, public_id: str, listing_id: int, vote: Vote) -> feedback.VoteResult:
        result = self.in_transaction(lambda s: feedback.record_vote(s, public_id, listing_id, vote))
        self.retrain_after(result)
        return result

    def restore_vote(self, public_id: str, listing_id: int, restore: Vote | None) -> feedback.VoteResult:
        result = self.in_transaction(lambda s: feedback.restore_vote(s, public_id, listing_id, restore))
        self.retrain_after(result)
        return result

    def remove_vote(self, public_id: str, listing_id: int) -> feedback.VoteResult:
        result = self.in_transaction(lambda s: feedback.remove_vote(s, public_id, listing_id))
        self.retrain_after(result)
        return result

    # Archive ----------------------------------------------------------------------------------------
    def archive(self, public_id: str) -> tuple[Subscriber, list[ArchiveEntry]]:
        def load(session: Session) -> tuple[Subscriber, list[ArchiveEntry]] | None:
            subscriber = subscriptions.find_by_public_id(session, public_id)
            if subscriber is None:
                return None
            rows = session.execute(
                select(Digest.id, Digest.digest_date, Digest.sent_at, func.count(DigestItem.id))
                .outerjoin(DigestItem, DigestItem.digest_id == Digest.id)
                .where(Digest.subscriber_id == subscriber.id, Digest.status == DigestStatus.SENT)
                .group_by(Digest.id, Digest.digest_date, Digest.sent_at)
                .order_by(Digest.digest_date.desc(), Digest.id.desc())
                .limit(ARCHIVE_SHOWN)
            )
            return subscriber, [ArchiveEntry(i, d, sent, int(n)) for i, d, sent, n in rows]

        loaded = self.reading(load)
        if loaded is None:
            raise LinkGone("this link is no longer valid")
        return loaded

    def digest_page(self, public_id: str, digest_id: int) -> DigestPage:
        """A sent digest of this subscriber only, with the votes they have cast on its papers since."""

        def load(session: Session) -> DigestPage | None:
            subscriber = subscriptions.find_by_public_id(session, public_id)
            if subscriber is None:
                raise LinkGone("this link is no longer valid")
            row = session.scalars(
                select(Digest)
                .where(
                    Digest.id == digest_id,
                    Digest.subscriber_id == subscriber.id,
                    Digest.status == DigestStatus.SENT,
                )
                .options(
                    selectinload(Digest.subscriber),
                    selectinload(Digest.items).selectinload(DigestItem.listing),
                )
            ).one_or_none()
            if row is None:
                return None
            listing_ids = {
                section: [i.listing_id for i in row.items if i.section == section]
                for section in ("picks", "trending")
            }
            wanted = {i.listing_id for i in row.items}
            votes = {
                listing_id: vote
                for listing_id, vote in feedback.votes_for(session, subscriber.id).items()
                if listing_id in wanted
            }
            return DigestPage(subscriber, row.id, digest_context(self.services, row), listing_ids, votes)

        page = self.reading(load)
        if page is None:
            raise DigestNotFound(f"no sent digest {digest_id} for this subscriber")
        return page

    def vote_in_digest(
        self, public_id: str, digest_id: int, listing_id: int, vote: Vote | None
    ) -> feedback.VoteResult:
        """A vote from the digest's page, for a paper that digest carried (`None` takes the vote back)."""

        def work(session: Session) -> feedback.VoteResult:
            subscriber = subscriptions.find_by_public_id(session, public_id)
            if subscriber is None:
                raise LinkGone("this link is no longer valid")
            carried = session.scalar(
                select(DigestItem.id)
                .join(Digest, Digest.id == DigestItem.digest_id)
                .where(
                    DigestItem.digest_id == digest_id,
                    DigestItem.listing_id == listing_id,
                    Digest.subscriber_id == subscriber.id,
                    Digest.status == DigestStatus.SENT,
                )
            )
            if carried is None:
                raise DigestNotFound(f"paper {listing_id} is not in this digest")
            if vote is None:
                return feedback.remove_vote(session, public_id, listing_id)
            return feedback.record_vote(session, public_id, listing_id, vote)

        result = self.in_transaction(work)
        self.retrain_after(result)
        return result

    def digest_with(self, public_id: str, listing_id: int) -> tuple[int, int] | None:
        """The latest sent digest that carried this paper to this subscriber: (digest id, its papers)."""

        def load(session: Session) -> tuple[int, int] | None:
            subscriber = subscriptions.find_by_public_id(session, public_id)
            if subscriber is None:
                return None
            digest_id = session.scalar(
                select(Digest.id)
                .join(DigestItem, DigestItem.digest_id == Digest.id)
                .where(
                    Digest.subscriber_id == subscriber.id,
                    Digest.status == DigestStatus.SENT,
                    DigestItem.listing_id == listing_id,
                )
                .order_by(Digest.digest_date.desc(), Digest.id.desc())
                .limit(1)
            )
            if digest_id is None:
                return None
            count = session.scalar(select(func.count(DigestItem.id)).where(DigestItem.digest_id == digest_id))
            return int(digest_id), int(count or 0)

        return self.reading(load)

    def preview(self, public_id: str, size: int = 5) -> list[PreviewPaper]:
        """What the reader's digest would hold if it were sent now (the first-day preview); [] if that
        cannot be worked out, which the pages treat as "nothing to show yet"."""
        subscriber = self.subscriber(public_id)
        try:
            picks = preview(
                self.services,
                subscriber.id,
                list(subscriber.topics),
                size=size,
                adjustments=subscriber.term_adjustments,
            )
        except Exception:
            log.exception("could not work out the preview of subscriber %s", subscriber.id)
            return []

        def load(session: Session) -> list[PreviewPaper]:
            ids = [listing_id for listing_id, *_ in picks]
            listings = {row.id: row for row in session.scalars(select(Listing).where(Listing.id.in_(ids)))}
            votes = feedback.votes_for(session, subscriber.id)
            return [
                PreviewPaper(
                    listing_id,
                    listings[listing_id].title,
                    listings[listing_id].url,
                    list(listings[listing_id].authors or []),
                    trim_abstract(listings[listing_id].abstract, PREVIEW_ABSTRACT),
                    reason,
                    votes.get(listing_id),
                    *_meta_and_pdf(listings[listing_id]),
                )
                for listing_id, _, reason, _ in picks
                if listing_id in listings
            ]

        return self.reading(load)

    def paper(self, listing_id: int) -> Listing | None:
        return self.reading(lambda s: s.get(Listing, listing_id))

    # Suggestions ------------------------------------------------------------------------------------
    def suggestions(self, prefix: str, limit: int = 8) -> list[Suggestion]:
        try:
            return suggest(self.services, prefix, limit=limit)
        except Exception:
            log.exception("topic suggestions failed")
            return []

    def topic_matches(self, topics: Sequence[str]) -> list[Suggestion] | None:
        """How many recent papers mention each topic; None when that cannot be worked out right now."""
        try:
            return topic_matches(self.services, list(topics))
        except Exception:
            log.exception("topic match counts failed")
            return None


def _meta_and_pdf(listing: Listing) -> tuple[str, str | None]:
    details = paper_details(listing)
    pdf = details["pdf_url"]
    return str(details["meta"]), pdf if isinstance(pdf, str) else None
