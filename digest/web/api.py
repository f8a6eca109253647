"""The JSON API beside the pages, described at /openapi.json.

The same signed tokens as the email links are the keys, in the path; no cookies are read or set, and
request bodies must be JSON (`digest.web.security.RequestGuards` answers 415 otherwise), so a page on
another site cannot make a browser call it. Errors are `{"detail": ...}`: a string for bad links (400)
and missing things (404), FastAPI's list of `{loc, msg, type}` naming the field for bad input (422).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from digest.deliver.schedule import describe
from digest.models import Cadence, SubscriberStatus, Vote
from digest.readers import PreferencesView, Readers
from digest.subscribers import feedback
from digest.subscribers.subscriptions import MAX_DIGEST_SIZE, MAX_EMAIL_LENGTH, MAX_TOPIC_LENGTH, MAX_TOPICS
from digest.subscribers.suggestions import RECENT_PAPERS

Topic = Annotated[str, Field(max_length=MAX_TOPIC_LENGTH)]
TopicQuery = Annotated[list[Topic], Query(max_length=MAX_TOPICS)]
VoteName = Literal["more", "less"]
VOTE_NAMES: dict[Vote, VoteName] = {Vote.MORE: "more", Vote.LESS: "less"}


class Problem(BaseModel):
    detail: str


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=MAX_EMAIL_LENGTH, examples=["ann@example.org"])
    topics: list[Topic] = Field(min_length=1, max_length=MAX_TOPICS, examples=[["diffusion models"]])
    cadence: Literal["daily", "weekly"] = "daily"
    send_hour: int | None = Field(
        default=None, ge=0, le=23, description="Local hour; the server's default if absent"
    )
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA zone such as Europe/Berlin; the server's default if absent",
    )
    weekly_day: int = Field(default=0, ge=0, le=6, description="0 is Monday; used by the weekly cadence")


class Accepted(BaseModel):
    status: Literal["check your inbox"] = "check your inbox"


class Term(BaseModel):
    term: str
    weight: float


class Learned(BaseModel):
    pulling: list[Term] = Field(description="Terms that pull papers into the digest, heaviest first")
    pushing: list[Term] = Field(description="Terms that push papers out, heaviest first")
    votes: int


class PastVote(BaseModel):
    listing_id: int
    title: str
    url: str | None
    vote: VoteName
    updated_at: datetime


class PreferencesOut(BaseModel):
    email: str = Field(description="Masked, as on the page: enough to recognise it")
    status: SubscriberStatus
    topics: list[str]
    cadence: Cadence
    send_hour: int
    timezone: str
    weekly_day: int
    digest_size: int | None
    show_trending: bool
    schedule: str = Field(description="The schedule in words")
    next_due_at: datetime | None
    learned: Learned | None = Field(description="null when the profile cannot be read right now")
    votes: list[PastVote]
    archive_url: str


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: list[Topic] = Field(min_length=1, max_length=MAX_TOPICS)
    cadence: Cadence
    send_hour: int = Field(ge=0, le=23)
    timezone: str = Field(max_length=64)
    weekly_day: int = Field(default=0, ge=0, le=6)
    digest_size: int | None = Field(
        default=None, ge=1, le=MAX_DIGEST_SIZE, description="Papers per digest; unchanged if null"
    )
    show_trending: bool = True


class VoteOut(BaseModel):
    listing_id: int
    title: str
    vote: VoteName | None = Field(description="The vote now stored; null when there is none")
    previous: VoteName | None
    changed: bool


class SuggestedTopic(BaseModel):
    topic: str
    papers: int = Field(description="How many recent papers mention it (title or abstract)")


class Suggestions(BaseModel):
    query: str
    suggestions: list[SuggestedTopic]
    window: int = Field(description="Recent papers means the latest this many stored")


class TopicMatches(BaseModel):
    topics: list[SuggestedTopic] = Field(description="One per topic asked about, in the same order")
    window: int = Field(description="Recent papers means the latest this many stored")


def mask_email(address: str) -> str:
    """Enough of the address to recognise it, not enough to harvest it from a forwarded link."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _vote_name(vote: Vote | None) -> VoteName | None:
    return None if vote is None else VOTE_NAMES[vote]


def _vote_out(result: feedback.VoteResult) -> VoteOut:
    return VoteOut(
        listing_id=result.listing.id,
        title=result.listing.title,
        vote=_vote_name(result.current),
        previous=_vote_name(result.previous),
        changed=result.changed,
    )


Responses = dict[int | str, dict[str, Any]]
BAD_LINK: Responses = {
    400: {"model": Problem, "description": "The token is invalid, tampered with or for another purpose"}
}
GONE: Responses = {404: {"model": Problem, "description": "The token names something no longer stored"}}
NOT_JSON: Responses = {
    413: {"model": Problem, "description": "The body is larger than 64 KB"},
    415: {"model": Problem, "description": "The body was not sent as application/json"},
}


# Over 60 lines: a router factory; its endpoints are nested here, each a few lines.
def api_router(core: Readers) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"])
    links = core.links
    settings = core.services.settings

    def preferences_out(view: PreferencesView) -> PreferencesOut:
        subscriber = view.subscriber
        learned = view.learned
        return PreferencesOut(
            email=mask_email(subscriber.email),
            status=subscriber.status,
            topics=list(subscriber.topics),
            cadence=view.schedule.cadence,
            send_hour=view.schedule.send_hour,
            timezone=view.schedule.timezone,
            weekly_day=view.schedule.weekly_day,
            digest_size=subscriber.digest_size,
            show_trending=subscriber.show_trending,
            schedule=describe(view.schedule),
            next_due_at=subscriber.next_due_at,
            learned=None
            if learned is None
            else Learned(
                pulling=[Term(term=e.label, weight=round(e.weight, 4)) for e in learned.likes],
                pushing=[Term(term=e.label, weight=round(e.weight, 4)) for e in learned.dislikes],
                votes=learned.votes,
            ),
            votes=[
                PastVote(
                    listing_id=v.listing_id,
                    title=v.title,
                    url=v.url,
                    vote=VOTE_NAMES[v.vote],
                    updated_at=v.updated_at,
                )
                for v in view.history
            ],
            archive_url=links.archive_url(subscriber.public_id),
        )

    @router.post(
        "/subscribe", name="api_subscribe", status_code=202, response_model=Accepted, responses={**NOT_JSON}
    )
    def subscribe(request: Request, body: SubscribeIn) -> Accepted:
        """Ask for a subscription. The answer is the same whatever the address's state: what happens next
        (a confirmation link, or a note that the address is already subscribed) arrives by email."""
        core.request_subscription(
            email=body.email,
            topics=body.topics,
            cadence=body.cadence,
            send_hour=settings.default_send_hour if body.send_hour is None else body.send_hour,
            timezone=body.timezone or settings.default_timezone,
            weekly_day=body.weekly_day,
            client_ip=request.client.host if request.client else "unknown",
        )
        return Accepted()

    @router.get(
        "/preferences/{token}",
        name="api_get_preferences",
        response_model=PreferencesOut,
        responses={**BAD_LINK, **GONE},
    )
    def get_preferences(token: str) -> PreferencesOut:
        """Settings, schedule, what the profile learned and the votes, for a preferences link's holder."""
        return preferences_out(core.preferences(links.read_preferences(token)))

    @router.put(
        "/preferences/{token}",
        name="api_put_preferences",
        response_model=PreferencesOut,
        responses={**BAD_LINK, **GONE, **NOT_JSON},
    )
    def put_preferences(token: str, body: PreferencesIn) -> PreferencesOut:
        """Replace the settings. Nothing changes when any field is refused (422 names it)."""
        public_id = links.read_preferences(token)
        core.save_preferences(
            public_id,
            topics=body.topics,
            cadence=body.cadence,
            send_hour=body.send_hour,
            timezone=body.timezone,
            weekly_day=body.weekly_day,
            digest_size=body.digest_size,
            show_trending=body.show_trending,
        )
        return preferences_out(core.preferences(public_id))

    @router.post(
        "/feedback/{token}",
        name="api_vote",
        response_model=VoteOut,
        responses={**BAD_LINK, **GONE, **NOT_JSON},
    )
    def post_feedback(token: str) -> VoteOut:
        """Record the vote a digest's feedback link stands for (no body needed); the last vote wins."""
        link = links.read_feedback(token)
        return _vote_out(core.vote(link.public_id, link.listing_id, link.vote))

    @router.delete(
        "/feedback/{token}/{listing_id}",
        name="api_remove_vote",
        response_model=VoteOut,
        responses={**BAD_LINK, **GONE, **NOT_JSON},
    )
    def delete_feedback(token: str, listing_id: int) -> VoteOut:
        """Remove the vote on one paper; `token` is the preferences token."""
        return _vote_out(core.remove_vote(links.read_preferences(token), listing_id))

    @router.get("/suggest", name="suggest", response_model=Suggestions)
    def suggest(q: Annotated[str, Query(max_length=100)] = "") -> Suggestions:
        """Topics the stored papers use, starting with (or containing a word starting with) `q`, each with
        how many recent papers mention it."""
        found = [SuggestedTopic(topic=s.topic, papers=s.papers) for s in core.suggestions(q)]
        return Suggestions(query=q, suggestions=found, window=RECENT_PAPERS)

    @router.get(
        "/topics/matches",
        name="topic_matches",
        response_model=TopicMatches,
        responses={503: {"model": Problem, "description": "The counts cannot be worked out right now"}},
    )
    def matches(
        topic: TopicQuery,
    ) -> TopicMatches:
        """How many recent papers mention each whole topic (`topic` repeated, up to 20): 0 means a digest
        on it would be empty for now."""
        counted = core.topic_matches(topic)
        if counted is None:
            raise HTTPException(503, "the counts cannot be worked out right now; try again later")
        return TopicMatches(
            topics=[SuggestedTopic(topic=s.topic, papers=s.papers) for s in counted], window=RECENT_PAPERS
        )

    return router
