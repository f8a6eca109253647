"""Turning the lines of a listing file into papers, one format per parser.

Parsers see already-decoded lines and know nothing of files or the database, so each can be tested
and reasoned about alone. A parser yields a `ParsedListing` for every usable record and a `Rejected`
for every record it had to skip, and never stops early: one bad record must not cost the rest.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

MAX_TITLE_CHARS = 1000
MAX_ABSTRACT_CHARS = 50_000
MAX_URL_CHARS = 2000
TITLE_KEY_CHARS = 500

# A title is a sentence fragment; prose this long is an abstract whatever else it looks like.
ABSTRACT_MIN_CHARS = 300
# Shorter abstracts still read as several words of running text.
SHORT_ABSTRACT_MIN_WORDS = 25

# Page furniture that a text dump glues to the first title, as in "SubscribeUnsupervised Corpus ...".
GLUED_HEADER_WORDS = ("Subscribe", "Sign up", "Signup", "Sign in", "Signin", "Log in", "Login", "Register")

# Zero-width joiners shape some scripts, so they survive; other invisible format characters do not.
_KEPT_FORMAT_CHARS = frozenset("\u200c\u200d")
_SENTENCE_BREAK = re.compile(r"[.!?]\s+\S")


class SourceLine(NamedTuple):
    number: int
    text: str
    # Longer than the reader is willing to hold in memory; `text` is then empty.
    too_long: bool = False


@dataclass(frozen=True)
class ParsedListing:
    """One paper as a source describes it. `line` is the file line, or the item's position in a feed.

    The identity fields let the same paper from two sources become one listing: `arxiv_id` is
    normalised and versionless ("2401.01234", "hep-th/9901001") with the version apart, `doi` lowercase
    without a resolver prefix.
    """

    line: int
    title: str
    abstract: str
    external_id: str | None = None
    url: str | None = None
    authors: list[str] = field(default_factory=list)
    published: date | None = None
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    categories: list[str] = field(default_factory=list)
    upvotes: int | None = None
    links: dict[str, str] = field(default_factory=dict)
    # arXiv feeds say "new", "cross", "replace" or "replace-cross"; a replacement is a new version of a
    # paper announced before, never news in itself.
    announce_type: str | None = None


@dataclass(frozen=True)
class Rejected:
    line: int
    message: str


ParseResult = ParsedListing | Rejected


def clean_text(text: str) -> str:
    """Make text safe to store and compare: invisible and control characters would otherwise split
    duplicates apart, and lone surrogates (legal in JSON escapes) cannot be encoded at all."""
    if text.isprintable():
        # Nothing invisible but plain spaces: the common case, kept off the per-character path.
        return " ".join(text.split())
    kept = []
    for char in text:
        if char.isspace():
            kept.append(" ")
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or (category == "Cf" and char not in _KEPT_FORMAT_CHARS):
            continue
        kept.append(char)
    return " ".join("".join(kept).split())


def normalize_title(title: str) -> str:
    """The key under which two spellings of one title meet, so a re-listed paper is recognised even
    when its case, punctuation or Unicode form differs."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    # Combining marks stay so scripts that write vowels as marks keep their words whole.
    kept = "".join(
        char if char.isalnum() or unicodedata.category(char).startswith("M") else " " for char in folded
    )
    return " ".join(kept.split())[:TITLE_KEY_CHARS].rstrip()


def _preview(text: str, limit: int = 60) -> str:
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(shown)


# --- Listing-page text dumps -------------------------------------------------------------------------


def looks_like_abstract(text: str) -> bool:
    if len(text) >= ABSTRACT_MIN_CHARS:
        return True
    return len(text.split()) >= SHORT_ABSTRACT_MIN_WORDS and (
        text.endswith(".") or _SENTENCE_BREAK.search(text) is not None
    )


def strip_glued_header(title: str) -> str:
    """Undo the page's concatenation of a button label and the first title, but only where the join
    is visible (a capital straight after the label), so a real title such as "Register Allocation
    for ..." is left alone."""
    for word in GLUED_HEADER_WORDS:
        if title.startswith(word):
            rest = title[len(word) :]
            if rest[:1].isupper():
                return rest
    return title


def _is_wrapped_tail(previous_part: str, text: str) -> bool:
    """A short line finishing a wrapped abstract: the abstract stopped mid-sentence and this line
    reads as the end of one rather than as a title."""
    if previous_part.endswith((".", "!", "?")):
        return False
    return text[:1].islower() or text.endswith(".")


@dataclass
class _OpenRecord:
    title_line: int
    title: str
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    too_long: bool = False

    def add(self, line: SourceLine) -> None:
        if line.too_long:
            self.too_long = True
        if self.too_long:
            return
        self.chars += len(line.text) + 1
        if self.chars > MAX_ABSTRACT_CHARS:
            # Keep no more text than can ever be stored.
            self.too_long = True
            self.parts.clear()
            return
        self.parts.append(line.text)

    def finish(self) -> ParseResult:
        if self.too_long:
            return Rejected(self.title_line, f"abstract longer than {MAX_ABSTRACT_CHARS} characters")
        return _checked_listing(self.title_line, self.title, " ".join(self.parts))


def _non_blank_with_next(
    lines: Iterable[SourceLine],
) -> Iterator[tuple[SourceLine, SourceLine | None, bool]]:
    """Each non-blank line with the next non-blank one, and whether blank lines came before it."""
    current: SourceLine | None = None
    current_after_blank = False
    blank_seen = False
    for line in lines:
        if not line.too_long and not line.text.strip():
            blank_seen = True
            continue
        if current is not None:
            yield current, line, current_after_blank
        current, current_after_blank, blank_seen = line, blank_seen, False
    if current is not None:
        yield current, None, current_after_blank


def _is_abstract_line(line: SourceLine | None) -> bool:
    return line is not None and (line.too_long or looks_like_abstract(line.text.strip()))


def parse_listing_text(lines: Iterable[SourceLine]) -> Iterator[ParseResult]:
    """Pair each title line with the prose that follows it.

    Lines are classified by shape, since the dumps carry no markup: an abstract is long prose, a title
    is short, and a title is only a title when an abstract follows it. Short lines before the first
    paper are page header and dropped silently; after the first paper, a short line with no abstract
    is a broken record and is reported.
    """
    record: _OpenRecord | None = None
    # Whether the last non-blank line went into the open record (its title or abstract text).
    in_record = False
    papers_seen = False
    strip_header_from_next_title = True

    for line, next_line, after_blank in _non_blank_with_next(lines):
        text = "" if line.too_long else line.text.strip()

        if _is_abstract_line(line):
            if record is not None and in_record and (not record.parts or not after_blank):
                record.add(line)
            else:
                # A title line is only accepted when an abstract line follows it, so this one has none.
                yield Rejected(line.number, "abstract text without a title line before it")
                strip_header_from_next_title = True
                in_record = False
            continue

        if (
            record is not None
            and in_record
            and record.parts
            and not after_blank
            and _is_wrapped_tail(record.parts[-1], text)
            and not _is_abstract_line(next_line)
        ):
            record.add(SourceLine(line.number, text))
            continue

        if record is not None:
            yield record.finish()
            record = None
        in_record = False

        if _is_abstract_line(next_line):
            title = strip_glued_header(text) if strip_header_from_next_title else text
            record = _OpenRecord(line.number, title)
            in_record = True
            papers_seen = True
            strip_header_from_next_title = False
        elif papers_seen:
            yield Rejected(line.number, f"title line with no abstract after it: {_preview(text)}")
            strip_header_from_next_title = True

    if record is not None:
        yield record.finish()


# --- JSON Lines --------------------------------------------------------------------------------------

_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


class _FieldError(ValueError):
    pass


def _required_text(obj: dict[str, Any], key: str) -> str:
    if key not in obj or obj[key] is None:
        raise _FieldError(f"missing {key!r}")
    value = obj[key]
    if not isinstance(value, str):
        raise _FieldError(f"{key!r} must be a string, not {_json_type(value)}")
    return value


def _optional_string(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _FieldError(f"{key!r} must be a string, not {_json_type(value)}")
    return value


def _checked_url(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    url = raw.strip()
    if len(url) > MAX_URL_CHARS:
        raise _FieldError(f"'url' longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _FieldError(f"'url' is not a valid URL: {_preview(url)}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise _FieldError(f"'url' must be an http or https URL, got {_preview(url)}")
    return url


def _checked_authors(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        names = value.split(",")
    elif isinstance(value, list):
        for name in value:
            if not isinstance(name, str):
                raise _FieldError(f"'authors' must hold strings, found {_json_type(name)}")
        names = value
    else:
        raise _FieldError(f"'authors' must be a list of strings or a string, not {_json_type(value)}")
    return [cleaned for name in names if (cleaned := clean_text(name))]


def _checked_date(raw: str | None) -> date | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        # The date as the source wrote it: a paper's publication day is not shifted to UTC.
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise _FieldError(f"'published' is not an ISO date or datetime: {_preview(text)}") from None


def _checked_listing(line: int, raw_title: str, raw_abstract: str, **extra: Any) -> ParseResult:
    title = clean_text(raw_title)
    abstract = clean_text(raw_abstract)
    if not title:
        return Rejected(line, "empty 'title'")
    if not abstract:
        return Rejected(line, "empty 'abstract'")
    if len(title) > MAX_TITLE_CHARS:
        return Rejected(line, f"'title' longer than {MAX_TITLE_CHARS} characters ({len(title)})")
    if len(abstract) > MAX_ABSTRACT_CHARS:
        return Rejected(line, f"'abstract' longer than {MAX_ABSTRACT_CHARS} characters ({len(abstract)})")
    return ParsedListing(line=line, title=title, abstract=abstract, **extra)


def _parse_json_line(line: SourceLine) -> ParseResult:
    if line.too_long:
        return Rejected(line.number, "line too long to be a listing")
    try:
        obj = json.loads(line.text)
    except json.JSONDecodeError as exc:
        return Rejected(line.number, f"invalid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return Rejected(line.number, "invalid JSON: nested too deeply")
    if not isinstance(obj, dict):
        return Rejected(line.number, f"expected a JSON object, got {_json_type(obj)}")
    try:
        title = _required_text(obj, "title")
        abstract = _required_text(obj, "abstract")
        return _checked_listing(
            line.number,
            title,
            abstract,
            external_id=_optional_string(obj, "id"),
            url=_checked_url(_optional_string(obj, "url")),
            authors=_checked_authors(obj.get("authors")),
            published=_checked_date(_optional_string(obj, "published")),
            doi=_optional_string(obj, "doi"),
        )
    except _FieldError as exc:
        return Rejected(line.number, str(exc))


def parse_json_lines(lines: Iterable[SourceLine]) -> Iterator[ParseResult]:
    """One listing per line; a line that is wrong in any way is rejected on its own."""
    for line in lines:
        if not line.too_long and not line.text.strip():
            continue
        yield _parse_json_line(line)
