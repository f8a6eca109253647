"""Signed links in emails and pages.

A link names the subscriber by their random public id, never by row id or address, and each purpose has
its own salt so a token minted for one action is useless for another. Mail scanners follow links, so
every link leads to a page whose button POSTs; a GET never changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from digest.config import Settings
from digest.models import Vote

CONFIRM_MAX_AGE_SECONDS = 7 * 24 * 3600


class BadLink(ValueError):
    """The token was tampered with, made for another purpose, malformed or expired."""


@dataclass(frozen=True)
class FeedbackLink:
    public_id: str
    listing_id: int
    vote: Vote


@dataclass(frozen=True)
class UndoLink:
    public_id: str
    listing_id: int
    restore: Vote | None


class _Minter:
    """Mints exactly the tokens `serializer.dumps` would, with the signing key derived once.

    itsdangerous derives the key from the secret and salt again for every token; a digest carries two
    dozen signed links, and at 100,000 digests a day that derivation was most of building the email's
    context. Reading tokens still goes through the serializer, so links already sent keep working.
    """

    def __init__(self, serializer: URLSafeSerializer) -> None:
        signer = serializer.make_signer()
        self._serializer = serializer
        self._key = signer.derive_key()
        self._algorithm = signer.algorithm
        self._sep = signer.sep

    def __call__(self, value: object) -> str:
        payload = self._serializer.dump_payload(value)
        signature = base64_encode(self._algorithm.get_signature(self._key, payload))
        return (payload + self._sep + signature).decode("ascii")


class Links:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.base_url
        key = settings.secret_key
        self._feedback = URLSafeSerializer(key, salt="digest.subscribers.feedback")
        self._undo = URLSafeSerializer(key, salt="digest.subscribers.feedback-undo")
        self._unsubscribe = URLSafeSerializer(key, salt="digest.unsubscribe")
        self._preferences = URLSafeSerializer(key, salt="digest.preferences")
        self._confirm = URLSafeTimedSerializer(key, salt="digest.confirm")
        self._archive = URLSafeSerializer(key, salt="digest.archive")
        self._mint_feedback = _Minter(self._feedback)
        self._mint_undo = _Minter(self._undo)
        self._mint_unsubscribe = _Minter(self._unsubscribe)
        self._mint_preferences = _Minter(self._preferences)
        self._mint_archive = _Minter(self._archive)

    # Tokens -----------------------------------------------------------------------------------
    def feedback_token(self, public_id: str, listing_id: int, vote: Vote) -> str:
        return self._mint_feedback([public_id, listing_id, int(vote)])

    def undo_token(self, public_id: str, listing_id: int, restore: Vote | None) -> str:
        return self._mint_undo([public_id, listing_id, 0 if restore is None else int(restore)])

    def unsubscribe_token(self, public_id: str) -> str:
        return self._mint_unsubscribe(public_id)

    def preferences_token(self, public_id: str) -> str:
        return self._mint_preferences(public_id)

    def confirm_token(self, public_id: str, nonce: str | None = None) -> str:
        """Bound to the request it answers when `nonce` is given (see `Subscriber.confirm_nonce`)."""
        return str(self._confirm.dumps(public_id if nonce is None else [public_id, nonce]))

    def archive_token(self, public_id: str, digest_id: int | None = None) -> str:
        """One digest's page, or (with no digest) the list of every digest sent to the subscriber."""
        return self._mint_archive([public_id, digest_id or 0])

    def read_archive(self, token: str) -> tuple[str, int | None]:
        value = _loads(self._archive, token)
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not isinstance(value[0], str)
            or not value[0]
            or not isinstance(value[1], int)
            or isinstance(value[1], bool)
            or value[1] < 0
        ):
            raise BadLink("this link is not valid")
        return value[0], value[1] or None

    def read_feedback(self, token: str) -> FeedbackLink:
        public_id, listing_id, vote = _triple(self._feedback, token)
        if vote not in (Vote.MORE, Vote.LESS):
            raise BadLink("unknown feedback action")
        return FeedbackLink(public_id, listing_id, Vote(vote))

    def read_undo(self, token: str) -> UndoLink:
        public_id, listing_id, restore = _triple(self._undo, token)
        if restore not in (0, Vote.MORE, Vote.LESS):
            raise BadLink("unknown undo action")
        return UndoLink(public_id, listing_id, Vote(restore) if restore else None)

    def read_unsubscribe(self, token: str) -> str:
        return _public_id(_loads(self._unsubscribe, token))

    def read_preferences(self, token: str) -> str:
        return _public_id(_loads(self._preferences, token))

    def read_confirm(self, token: str) -> str:
        return self.read_confirm_request(token)[0]

    def read_confirm_request(self, token: str) -> tuple[str, str | None]:
        """The subscriber's public id and the request nonce (None in links made before nonces)."""
        try:
            value = self._confirm.loads(token, max_age=CONFIRM_MAX_AGE_SECONDS)
        except SignatureExpired:
            raise BadLink("this confirmation link has expired; subscribe again to get a new one") from None
        except BadData:
            raise BadLink("this link is not valid") from None
        if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str) and value[1]:
            return _public_id(value[0]), value[1]
        return _public_id(value), None

    # URLs -------------------------------------------------------------------------------------
    def feedback_url(self, public_id: str, listing_id: int, vote: Vote) -> str:
        return f"{self.base_url}/feedback/{self.feedback_token(public_id, listing_id, vote)}"

    def undo_url(self, public_id: str, listing_id: int, restore: Vote | None) -> str:
        return f"{self.base_url}/feedback/undo/{self.undo_token(public_id, listing_id, restore)}"

    def unsubscribe_url(self, public_id: str) -> str:
        return f"{self.base_url}/unsubscribe/{self.unsubscribe_token(public_id)}"

    def preferences_url(self, public_id: str) -> str:
        return f"{self.base_url}/preferences/{self.preferences_token(public_id)}"

    def confirm_url(self, public_id: str, nonce: str | None = None) -> str:
        return f"{self.base_url}/confirm/{self.confirm_token(public_id, nonce)}"

    def archive_url(self, public_id: str, digest_id: int | None = None) -> str:
        return f"{self.base_url}/archive/{self.archive_token(public_id, digest_id)}"

    def paper_url(self, listing_id: int) -> str:
        """The service's public page of a paper: where a title links when the paper has no web URL of its own.

        Unsigned: the page shows only what the paper's source published, nothing about any subscriber."""
        if isinstance(listing_id, bool) or not isinstance(listing_id, int) or listing_id < 1:
            raise ValueError(f"a paper's listing id must be a positive whole number, got {listing_id!r}")
        return f"{self.base_url}/papers/{listing_id}"


def _loads(serializer: URLSafeSerializer, token: str) -> Any:
    try:
        return serializer.loads(token)
    except BadData:
        raise BadLink("this link is not valid") from None


def _public_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadLink("this link is not valid")
    return value


def _triple(serializer: URLSafeSerializer, token: str) -> tuple[str, int, int]:
    value = _loads(serializer, token)
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], str)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])
    ):
        raise BadLink("this link is not valid")
    return value[0], value[1], value[2]
