"""arXiv announcement feeds (RSS 2.0 and Atom): the day's new and updated papers of a category."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple
from xml.etree.ElementTree import Element

from digest.ingest.formats import (
    ParseResult,
    Rejected,
    clean_text,
)
from digest.ingest.parsers.common import (
    ARXIV,
    ATOM,
    DUBLIN_CORE,
    OPENSEARCH,
    FeedFormatError,
    _arxiv_links,
    _checked_paper,
    _child_text,
    _describe_root,
    _iso_date,
    _item_label,
    _names,
    _parse_xml,
    _plain_text,
    _rfc822_date,
    _text,
    _unique,
)
from digest.ingest.parsers.identity import arxiv_abs_url, normalize_arxiv_id

# --- arXiv announcement feeds (RSS 2.0 and Atom) -----------------------------------------------------


class Announcement(NamedTuple):
    """What the first lines of an announcement-feed description say about the paper."""

    arxiv_id: str
    version: int | None
    announce_type: str | None
    abstract: str


_ANNOUNCEMENT = re.compile(
    r"\s*arXiv:(?P<id>\S+)\s+(?:Announce\s+Type:\s*(?P<type>[\w-]+)\s+)?Abstract:\s?(?P<abstract>.*)",
    re.DOTALL | re.IGNORECASE,
)
# Feeds before 2024 ended each title with "(arXiv:2301.00001v1 [cs.LG] UPDATED)".
_LEGACY_TITLE_SUFFIX = re.compile(r"\(arXiv:\S+\s*\[[^\]]*\][^)]*\)\s*")
_AND = re.compile(r"\s+and\s+")


def _without_legacy_suffix(title: str) -> str:
    suffix_start = title.rfind("(arXiv:")
    if suffix_start >= 0 and _LEGACY_TITLE_SUFFIX.fullmatch(title, suffix_start):
        return title[:suffix_start]
    return title


def parse_announcement(description: str) -> Announcement | None:
    """Split "arXiv:2401.01234v2 Announce Type: replace Abstract: ..." into its parts. The announce type
    tells a new paper from a cross-list or a new version of one announced before."""
    match = _ANNOUNCEMENT.match(description)
    if match is None:
        return None
    identity = normalize_arxiv_id(match["id"])
    if identity is None:
        return None
    announce_type = match["type"].lower() if match["type"] else None
    return Announcement(identity[0], identity[1], announce_type, match["abstract"])


def parse_arxiv_rss(body: bytes) -> list[ParseResult]:
    """Read an arXiv announcement feed (rss.arxiv.org/rss/<cat> or /atom/<cat>). A feed with no items is
    a day without announcements (weekends, holidays), not an error."""
    root = _parse_xml(body, "an RSS or Atom feed")
    if root.tag == "rss":
        items = root.findall("channel/item")
        title = _child_text(root, "channel/title")
    elif root.tag == f"{ATOM}feed":
        if root.find(f"{OPENSEARCH}totalResults") is not None:
            # Read as an announcement feed it would lose the API's DOIs and PDF links.
            raise FeedFormatError(
                "got an arXiv API response (export.arxiv.org/api/query), not an announcement feed; "
                "add it as a source of kind arxiv_api"
            )
        items = root.findall(f"{ATOM}entry")
        title = _child_text(root, f"{ATOM}title")
    else:
        raise FeedFormatError(f"expected an RSS or Atom feed, got {_describe_root(root)}")
    if title is not None and _plain_text(title).lower().startswith("feed error"):
        raise FeedFormatError(f"arXiv answered with an error feed: {_error_feed_message(root, title)}")
    return [_announcement_item(position, item) for position, item in enumerate(items, start=1)]


def _error_feed_message(root: Element, title: str) -> str:
    """A mistyped category gets HTTP 200 and a feed titled "Feed error for query ..." whose text says
    what was wrong ("Bad archive ..., valid archive names are ..."): that text, in arXiv's words."""
    texts = [_plain_text(title)]
    for path in ("channel/description", "channel/item/title", "channel/item/description",
                 f"{ATOM}subtitle", f"{ATOM}entry/{ATOM}title", f"{ATOM}entry/{ATOM}summary"):  # fmt: skip
        for element in root.findall(path):
            text = _plain_text(_text(element) or "")
            if text and text not in texts:
                texts.append(text)
    return "; ".join(texts)[:1000]


def _first_text(item: Element, tags: Iterable[str]) -> str | None:
    for tag in tags:
        if (text := _child_text(item, tag)) is not None:
            return text
    return None


def _alternate_link(item: Element) -> str | None:
    if (rss_link := _child_text(item, "link")) is not None:
        return rss_link
    for link in item.findall(f"{ATOM}link"):
        if link.get("rel", "alternate") == "alternate":
            return link.get("href")
    return None


def _announcement_identity(item: Element, announcement: Announcement | None) -> tuple[str, int | None] | None:
    if announcement is not None:
        return announcement.arxiv_id, announcement.version
    for raw in (_first_text(item, ("guid", f"{ATOM}id")), _alternate_link(item)):
        if raw and (identity := normalize_arxiv_id(raw)):
            return identity
    return None


def _announcement_authors(item: Element) -> list[str]:
    creators = [text for element in item.findall(f"{DUBLIN_CORE}creator") if (text := _text(element))]
    if not creators:
        creators = [
            name for author in item.findall(f"{ATOM}author") if (name := _child_text(author, f"{ATOM}name"))
        ]
    return _names(name for creator in creators for name in split_authors(_plain_text(creator)))


def split_authors(text: str) -> list[str]:
    """ "Ann Lee (Univ. A, Dept. B, City), Bo Li, and Cy Wu (C Lab)" -> the three names.

    arXiv's dc:creator puts each author's affiliations in parentheses, commas and all; a comma or an
    "and" separates authors only outside parentheses, and the parenthesised part is not the name."""
    names: list[str] = []
    depth = 0
    current: list[str] = []
    for character in text:
        if character in "([":
            depth += 1
        elif character in ")]":
            depth = max(0, depth - 1)
        elif character == "," and depth == 0:
            names.append("".join(current))
            current = []
            continue
        if depth == 0 and character not in ")]":
            current.append(character)
    names.append("".join(current))
    return [
        " ".join(part.split())
        for name in names
        for part in _AND.split(" " + name.strip() + " ")
        if part.strip() and part.strip().lower() != "and"
    ]


def _announcement_item(position: int, item: Element) -> ParseResult:
    is_rss = item.tag == "item"
    description_name = "<description>" if is_rss else "<summary>"
    description = _child_text(item, "description" if is_rss else f"{ATOM}summary")
    announcement = parse_announcement(description) if description is not None else None
    identity = _announcement_identity(item, announcement)
    if identity is None:
        return Rejected(position, f"item {position}: no arXiv id in {description_name}, <link> or id")
    arxiv_id, version = identity
    raw_title = _child_text(item, "title" if is_rss else f"{ATOM}title")
    if raw_title is not None:
        raw_title = _without_legacy_suffix(raw_title)
    if is_rss:
        categories = [_text(category) or "" for category in item.findall("category")]
        published = _rfc822_date(_first_text(item, ("pubDate", f"{DUBLIN_CORE}date")))
    else:
        categories = [category.get("term", "") for category in item.findall(f"{ATOM}category")]
        published = _iso_date(_first_text(item, (f"{ATOM}published", f"{ATOM}updated")))
    return _checked_paper(
        position,
        _item_label(position, arxiv_id),
        raw_title,
        announcement.abstract if announcement is not None else description,
        ("<title>", description_name),
        external_id=arxiv_id,
        url=arxiv_abs_url(arxiv_id),
        authors=_announcement_authors(item),
        published=published,
        arxiv_id=arxiv_id,
        version=version,
        categories=_unique(clean_text(category) for category in categories),
        links=_arxiv_links(arxiv_id),
        announce_type=_first_text(item, (f"{ARXIV}announce_type",))
        or (announcement.announce_type if announcement is not None else None),
    )
