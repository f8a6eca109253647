"""What the subscribe and settings forms say when an entry is refused: one message per field, in the
words on the form, shown next to the field it is about.

The checks themselves live with the data (`subscriptions`, `schedule`) and name the field they refused
in our terms ("digest_size"); a reader never sees those names. Every field is checked, not only the
first one wrong, so the form can be fixed in one go.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from digest.deliver.schedule import InvalidSchedule, validated
from digest.readers import Readers
from digest.subscribers import subscriptions
from digest.subscribers.subscriptions import MAX_DIGEST_SIZE, MAX_TOPICS
from digest.subscribers.suggestions import Suggestion

# The label each field has on the forms, for the summary above them.
LABELS = {
    "email": "Email address",
    "topics": "Topics",
    "cadence": "How often",
    "weekly_day": "Day",
    "send_hour": "Delivery time",
    "timezone": "Time zone",
    "digest_size": "Papers per digest",
}

# Fields whose entries come from a fixed list on the form: what was sent is not worth repeating back.
_CHOOSE = {
    "cadence": "Choose how often: every day or once a week.",
    "weekly_day": "Choose a day of the week from the list.",
    "send_hour": "Choose a delivery time from the list.",
    "timezone": "Choose a time zone from the list, such as Europe/Berlin.",
}
PAPERS_RANGE = f"Choose between 1 and {MAX_DIGEST_SIZE} papers."


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    @property
    def label(self) -> str:
        return LABELS.get(self.field, self.field)


_QUOTED = re.compile(r"""^(?:'([^']*)'|"([^"]*)")""")
_BAD_ADDRESS = re.compile(
    r"^(“.*”) is not a valid email address \((?:The email address is not valid\. )?(.*)\)$"
)


def _sentence(problem: str) -> str:
    """A check's problem as a sentence, with what was typed in quotation marks rather than Python's."""
    text = _QUOTED.sub(lambda m: f"“{m.group(1) if m.group(1) is not None else m.group(2)}”", problem.strip())
    bad_address = _BAD_ADDRESS.match(text)
    if bad_address:
        quoted, detail = bad_address.groups()
        text = f"{quoted} is not an email address we can send to. {detail}"
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def _topics_message(problem: str) -> str:
    if problem.startswith("at least one"):
        return "Add at least one topic, such as “diffusion models”."
    if problem.startswith("at most"):
        entered = problem.partition("(got ")[2].rstrip(")")
        return f"Choose at most {MAX_TOPICS} topics; {entered} were entered."
    if "is longer than" in problem:
        return _sentence(problem) + " Shorten it, or split it into topics with commas."
    return _sentence(problem)


def reader_message(error: subscriptions.InvalidSubscription | InvalidSchedule) -> FieldError:
    """The refusal in the form's words, for the field it names."""
    field, problem = error.field, error.problem
    if field in _CHOOSE:
        if field == "timezone" and "is not an IANA time zone" in problem:
            shown = problem.partition(" is not")[0].strip("'\"")
            return FieldError(field, f"“{shown}” is not a time zone we know. {_CHOOSE[field]}")
        return FieldError(field, _CHOOSE[field])
    if field == "digest_size":
        return FieldError(field, PAPERS_RANGE)
    if field == "topics":
        return FieldError(field, _topics_message(problem))
    if field == "email" and problem == "an email address is needed":
        return FieldError(field, "Enter your email address, such as ann@example.org.")
    return FieldError(field, _sentence(problem))


def _refusal(check: Callable[[], object]) -> FieldError | None:
    try:
        check()
    except (subscriptions.InvalidSubscription, InvalidSchedule) as error:
        return reader_message(error)
    return None


def check_fields(
    *,
    email: str | None = None,
    topics: str | None = None,
    cadence: str,
    send_hour: str,
    timezone: str,
    weekly_day: str,
    cadences: Iterable[str] = ("daily", "weekly"),
    digest_size: str | None = None,
) -> dict[str, FieldError]:
    """Every refused field, each checked on its own (the others given known-good values), in form order."""
    found: list[FieldError | None] = []
    if email is not None:
        found.append(_refusal(lambda: subscriptions.normalize_email(email)))
    if topics is not None:
        found.append(_refusal(lambda: subscriptions.parse_topics(topics)))
    if digest_size is not None and digest_size.strip():
        size = digest_size.strip()
        if not size.isdigit() or not 1 <= int(size) <= MAX_DIGEST_SIZE:
            found.append(FieldError("digest_size", PAPERS_RANGE))
    if cadence not in cadences:
        offered = "every day, once a week or paused" if "paused" in cadences else "every day or once a week"
        found.append(FieldError("cadence", f"Choose how often: {offered}."))
    found.append(_refusal(lambda: validated("daily", 0, "UTC", weekly_day)))
    found.append(_refusal(lambda: validated("daily", send_hour, "UTC", 0)))
    found.append(_refusal(lambda: validated("daily", 0, timezone, 0)))
    return {error.field: error for error in found if error is not None}


def typed_topic_matches(core: Readers, topics: str) -> list[Suggestion] | None:
    """Recent papers per topic in the box, for the note under it; None when the box cannot be read."""
    try:
        typed = subscriptions.parse_topics(topics)
    except subscriptions.InvalidSubscription:
        return None
    return core.topic_matches(typed)
