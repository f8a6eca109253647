from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.deliver.schedule import Schedule
from digest.models import Cadence, Subscriber, SubscriberStatus
from digest.services import Services
from digest.subscribers.subscriptions import (
    NOTICE_INTERVAL,
    InvalidSubscription,
    Notice,
    confirm,
    find_by_public_id,
    lift_suppression,
    normalize_email,
    parse_topics,
    request_subscription,
    resubscribe,
    subscribe,
    unsubscribe,
    update_schedule,
    update_topics,
)


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


def public_id_of(session: Session, subscriber_id: int) -> str:
    subscriber = session.get(Subscriber, subscriber_id)
    assert subscriber is not None
    return subscriber.public_id


# parse_topics -----------------------------------------------------------------------------------


def test_parse_topics_splits_on_commas_semicolons_and_newlines_keeping_order() -> None:
    raw = "graph neural networks; protein folding\nreinforcement learning,  causal   inference "
    assert parse_topics(raw) == [
        "graph neural networks",
        "protein folding",
        "reinforcement learning",
        "causal inference",
    ]


def test_parse_topics_drops_empties_and_case_insensitive_duplicates() -> None:
    assert parse_topics(["Protein Folding", "", " , ;", "protein folding", "LLMs", "llms"]) == [
        "Protein Folding",
        "LLMs",
    ]


def test_parse_topics_needs_at_least_one() -> None:
    with pytest.raises(InvalidSubscription, match=r"^topics: at least one topic is needed$"):
        parse_topics(" ,;\n ")


def test_parse_topics_rejects_a_topic_over_100_characters() -> None:
    with pytest.raises(InvalidSubscription, match=r"^topics: 'x+…' is longer than 100 characters$"):
        parse_topics("short, " + "x" * 101)
    assert parse_topics("y" * 100) == ["y" * 100]


def test_parse_topics_allows_at_most_20() -> None:
    assert len(parse_topics([f"topic {n}" for n in range(20)])) == 20
    with pytest.raises(InvalidSubscription, match=r"^topics: at most 20 topics"):
        parse_topics(",".join(f"topic {n}" for n in range(21)))


# normalize_email --------------------------------------------------------------------------------


def test_normalize_email_lowercases_and_strips() -> None:
    assert normalize_email("  Ann.Lee@Example.ORG ") == "ann.lee@example.org"


@pytest.mark.parametrize("raw", ["foo", "a@b", "two@@example.org", "ann lee@example.org"])
def test_normalize_email_names_the_field_and_the_input(raw: str) -> None:
    with pytest.raises(InvalidSubscription) as caught:
        normalize_email(raw)
    assert caught.value.field == "email"
    assert str(caught.value).startswith(f"email: {raw!r} is not a valid email address (")


@pytest.mark.parametrize("raw", ["ann@example.org\r\nBcc: eve@example.org", "ann\n@example.org"])
def test_normalize_email_rejects_line_breaks(raw: str) -> None:
    with pytest.raises(InvalidSubscription, match=r"^email: .*line breaks"):
        normalize_email(raw)


def test_normalize_email_rejects_empty() -> None:
    with pytest.raises(InvalidSubscription, match=r"^email: an email address is needed$"):
        normalize_email("   ")


# State transitions ------------------------------------------------------------------------------


def test_new_address_is_pending_until_confirmed(session: Session) -> None:
    result = subscribe(session, "Ann@Example.org", "llms, robotics")
    assert result.created and result.needs_confirmation
    subscriber = session.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    assert subscriber.email == "ann@example.org"
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.topics == ["llms", "robotics"]
    assert subscriber.confirmed_at is None

    confirmed = confirm(session, subscriber.public_id)
    assert confirmed is subscriber
    assert subscriber.status is SubscriberStatus.ACTIVE
    first_confirmation = subscriber.confirmed_at
    assert first_confirmation is not None

    confirm(session, subscriber.public_id)
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at == first_confirmation


def test_confirmed_subscribe_is_active_at_once(session: Session) -> None:
    result = subscribe(session, "bob@example.org", "optics", confirmed=True)
    assert result.created and not result.needs_confirmation
    subscriber = session.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at is not None


def test_pending_address_subscribing_again_updates_topics_and_still_needs_confirmation(
    session: Session,
) -> None:
    first = subscribe(session, "ann@example.org", "llms")
    again = subscribe(session, "ANN@example.org", "optics")
    assert again.subscriber_id == first.subscriber_id
    assert not again.created and again.needs_confirmation
    subscriber = session.get(Subscriber, first.subscriber_id)
    assert subscriber is not None
    assert subscriber.topics == ["optics"]
    assert subscriber.status is SubscriberStatus.PENDING
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_an_unproven_subscribe_leaves_an_active_subscribers_topics_alone(session: Session) -> None:
    first = subscribe(session, "ann@example.org", "llms", confirmed=True)
    again = subscribe(session, "ann@example.org", "optics; llms")
    assert not again.created and not again.needs_confirmation
    subscriber = session.get(Subscriber, first.subscriber_id)
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.topics == ["llms"]


def test_the_admin_path_updates_an_active_subscribers_topics(session: Session) -> None:
    first = subscribe(session, "ann@example.org", "llms", confirmed=True)
    subscribe(session, "ann@example.org", "optics; llms", confirmed=True)
    subscriber = session.get(Subscriber, first.subscriber_id)
    assert subscriber is not None
    assert subscriber.topics == ["optics", "llms"]


def test_unsubscribe_is_immediate_idempotent_and_keeps_the_first_time(session: Session) -> None:
    result = subscribe(session, "ann@example.org", "llms", confirmed=True)
    public_id = public_id_of(session, result.subscriber_id)
    subscriber = unsubscribe(session, public_id)
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED
    first_time = subscriber.unsubscribed_at
    assert first_time is not None

    unsubscribe(session, public_id)
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED
    assert subscriber.unsubscribed_at == first_time


def test_unsubscribed_address_subscribing_again_must_confirm_again(session: Session) -> None:
    result = subscribe(session, "ann@example.org", "llms", confirmed=True)
    public_id = public_id_of(session, result.subscriber_id)
    unsubscribe(session, public_id)

    again = subscribe(session, "ann@example.org", "optics")
    assert again.needs_confirmation and not again.created
    subscriber = find_by_public_id(session, public_id)
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.confirmed_at is None and subscriber.unsubscribed_at is None

    confirm(session, public_id)
    assert subscriber.status is SubscriberStatus.ACTIVE


def test_unsubscribed_address_subscribing_with_confirmed_is_active(session: Session) -> None:
    result = subscribe(session, "ann@example.org", "llms", confirmed=True)
    public_id = public_id_of(session, result.subscriber_id)
    unsubscribe(session, public_id)
    again = subscribe(session, "ann@example.org", "llms", confirmed=True)
    assert not again.needs_confirmation
    subscriber = find_by_public_id(session, public_id)
    assert subscriber is not None and subscriber.status is SubscriberStatus.ACTIVE


def test_confirm_does_not_revive_an_unsubscribed_address(session: Session) -> None:
    result = subscribe(session, "ann@example.org", "llms")
    public_id = public_id_of(session, result.subscriber_id)
    unsubscribe(session, public_id)
    subscriber = confirm(session, public_id)
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED


def test_resubscribe_reactivates_without_confirmation(session: Session) -> None:
    result = subscribe(session, "ann@example.org", "llms")
    public_id = public_id_of(session, result.subscriber_id)
    unsubscribe(session, public_id)
    subscriber = resubscribe(session, public_id)
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at is not None
    assert subscriber.unsubscribed_at is None


def test_update_topics_validates_and_replaces(session: Session) -> None:
    result = subscribe(session, "ann@example.org", "llms", confirmed=True)
    public_id = public_id_of(session, result.subscriber_id)
    subscriber = update_topics(session, public_id, "Optics\nquantum sensing")
    assert subscriber is not None
    assert subscriber.topics == ["Optics", "quantum sensing"]
    with pytest.raises(InvalidSubscription, match=r"^topics:"):
        update_topics(session, public_id, " ; ")
    assert subscriber.topics == ["Optics", "quantum sensing"]


def test_unknown_public_id_gives_none(session: Session) -> None:
    assert find_by_public_id(session, "nobody") is None
    assert confirm(session, "nobody") is None
    assert unsubscribe(session, "nobody") is None
    assert resubscribe(session, "nobody") is None
    assert update_topics(session, "nobody", "llms") is None


def test_invalid_input_stores_nothing(session: Session) -> None:
    with pytest.raises(InvalidSubscription, match=r"^email:"):
        subscribe(session, "not-an-address", "llms")
    with pytest.raises(InvalidSubscription, match=r"^topics:"):
        subscribe(session, "ann@example.org", "")
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


# The public form's requests ---------------------------------------------------------------------


def test_request_subscription_asks_a_new_address_to_confirm_once_an_hour(session: Session) -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    first = request_subscription(session, "ann@example.org", "optics", now=now)
    assert first.notice is Notice.CONFIRM
    subscriber = session.get(Subscriber, first.subscriber_id)
    assert subscriber is not None and subscriber.confirmation_sent_at == now
    assert subscriber.status is SubscriberStatus.PENDING

    soon = request_subscription(session, "ann@example.org", "lasers", now=now + timedelta(minutes=59))
    assert (soon.subscriber_id, soon.notice) == (first.subscriber_id, None)
    assert subscriber.topics == ["lasers"], "a pending address still takes the newest topics"
    assert subscriber.confirmation_sent_at == now

    later = request_subscription(session, "ann@example.org", "lasers", now=now + NOTICE_INTERVAL)
    assert later.notice is Notice.CONFIRM
    assert subscriber.confirmation_sent_at == now + NOTICE_INTERVAL


def test_request_subscription_tells_an_active_address_without_changing_it(session: Session) -> None:
    active = subscribe(session, "ann@example.org", "optics", confirmed=True)
    result = request_subscription(session, "ann@example.org", "something else")
    assert (result.subscriber_id, result.notice) == (active.subscriber_id, Notice.ALREADY_SUBSCRIBED)
    subscriber = session.get(Subscriber, active.subscriber_id)
    assert subscriber is not None
    assert (subscriber.status, subscriber.topics) == (SubscriberStatus.ACTIVE, ["optics"])
    assert request_subscription(session, "ann@example.org", "optics").notice is None


def test_request_subscription_makes_an_unsubscribed_address_confirm_again(session: Session) -> None:
    result = subscribe(session, "ann@example.org", "optics", confirmed=True)
    subscriber = session.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    again = request_subscription(session, "ann@example.org", "optics")
    assert again.notice is Notice.CONFIRM
    assert subscriber.status is SubscriberStatus.PENDING


@pytest.mark.parametrize("reason", ["550 5.1.1 no such user", "complaint: abuse report from the provider"])
def test_a_suppressed_address_is_never_mailed_from_the_form_until_the_operator_lifts_it(
    session: Session, reason: str
) -> None:
    result = subscribe(session, "ann@example.org", "optics", confirmed=True)
    subscriber = session.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    subscriber.status = (
        SubscriberStatus.UNSUBSCRIBED if reason.startswith("complaint") else SubscriberStatus.BOUNCED
    )
    subscriber.bounce_reason = reason
    before = subscriber.status
    for _ in range(3):
        assert request_subscription(session, "Ann@Example.org", "crypto, https://evil.example").notice is None
    assert subscriber.status is before and subscriber.topics == ["optics"]
    assert resubscribe(session, subscriber.public_id) is subscriber and subscriber.status is before
    lifted = lift_suppression(session, "ann@example.org")
    assert lifted is subscriber and subscriber.status is SubscriberStatus.UNSUBSCRIBED
    assert request_subscription(session, "ann@example.org", "optics").notice is Notice.CONFIRM


@pytest.mark.parametrize(
    ("field", "email", "topics"),
    [
        ("topics", "ann@example.org", "optics\x00"),
        ("topics", "ann@example.org", "optics\x1b[31m"),
        ("email", "ann\x00@example.org", "optics"),
    ],
)
def test_control_characters_are_refused_naming_the_field(
    session: Session, field: str, email: str, topics: str
) -> None:
    with pytest.raises(InvalidSubscription, match=rf"^{field}: contains a control character \(U\+00"):
        request_subscription(session, email, topics)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


@pytest.mark.parametrize("email", ["\uff56ictim@example.org", "\u00df@example.org"])
def test_a_non_ascii_local_part_is_refused_as_undeliverable(session: Session, email: str) -> None:
    with pytest.raises(InvalidSubscription, match=r"^email: the part before the @ must be plain ASCII"):
        request_subscription(session, email, "optics")


def test_request_subscription_validates_before_storing(session: Session) -> None:
    with pytest.raises(InvalidSubscription, match=r"^topics"):
        request_subscription(session, "ann@example.org", " ; ")
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_normalize_email_refuses_an_overlong_address() -> None:
    with pytest.raises(InvalidSubscription, match=r"^email: an email address has at most 320 characters$"):
        normalize_email("a" * 330 + "@example.org")


def test_update_schedule_moves_or_clears_the_next_delivery(session: Session) -> None:
    result = subscribe(session, "ann@example.org", "optics", confirmed=True)
    subscriber = session.get(Subscriber, result.subscriber_id)
    assert subscriber is not None and subscriber.next_due_at is not None
    update_schedule(session, subscriber.public_id, Schedule(Cadence.PAUSED, 6, "UTC"))
    assert subscriber.next_due_at is None
    update_schedule(
        session, subscriber.public_id, Schedule(Cadence.WEEKLY, 9, "Asia/Tokyo", 3), digest_size=4
    )
    assert subscriber.next_due_at is not None and subscriber.digest_size == 4
    local = subscriber.next_due_at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.weekday(), local.hour) == (3, 9)
    with pytest.raises(InvalidSubscription, match=r"^digest_size"):
        update_schedule(session, subscriber.public_id, Schedule(Cadence.DAILY, 6, "UTC"), digest_size=51)
