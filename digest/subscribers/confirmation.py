"""The email that answers a subscribe request: a confirmation link, or "you are already subscribed"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.deliver.schedule import describe, schedule_of
from digest.mail.compose import compose
from digest.models import Subscriber, SubscriberStatus
from digest.services import Services


def send_confirmation(services: Services, subscriber_id: int) -> str:
    """Answer a subscribe request by email; returns the Message-ID, or "" if nothing was sent.

    A pending address gets its confirmation link. An active one gets "you are already subscribed" with
    its preferences link, so the form can answer the same for every address without leaving the owner
    in the dark. The task may be replayed (a retry, a redelivered queue message): an address that was
    confirmed or unsubscribed meanwhile is not mailed, nor an active one whose request is over an hour
    old. A DeliveryError propagates so the task runner can retry the send.
    """
    links = services.links
    with services.sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return ""
        to = subscriber.email
        if subscriber.status is SubscriberStatus.PENDING:
            template = "confirm"
            # Nothing the requester typed goes into this email but the address itself: a form that mails
            # strangers must not carry a stranger's words (or links) in our name.
            context: dict[str, object] = {
                "email": subscriber.email,
                "topic_count": len(subscriber.topics),
                "cadence": subscriber.cadence.value,
                "confirm_url": links.confirm_url(subscriber.public_id, subscriber.confirm_nonce),
            }
        elif subscriber.status is SubscriberStatus.ACTIVE and _recently_requested(
            subscriber.confirmation_sent_at
        ):
            template = "already_subscribed"
            context = {
                "email": subscriber.email,
                "topics": list(subscriber.topics),
                "schedule": describe(schedule_of(subscriber)),
                "preferences_url": links.preferences_url(subscriber.public_id),
                "archive_url": links.archive_url(subscriber.public_id),
                "unsubscribe_url": links.unsubscribe_url(subscriber.public_id),
            }
        else:
            return ""
    rendered = services.renderer.render(template, context)
    mail = compose(services.settings, to=to, rendered=rendered, unsubscribe_url=None, signer=services.dkim)
    services.rate_limiter.acquire()
    with services.mailer.open() as connection:
        connection.send(mail)
    return mail.message_id


def _recently_requested(requested_at: datetime | None) -> bool:
    return requested_at is not None and datetime.now(UTC) - requested_at < timedelta(hours=1)
