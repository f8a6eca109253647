"""Parsers for the external paper sources: the arXiv API, arXiv announcement feeds, Hugging Face daily papers.

Each parser takes the response body as bytes and never touches the network, so a saved response is a
complete test case. Two kinds of failure are kept apart: a document that cannot be used at all (an HTML
error page served with status 200, broken XML, a JSON error object) raises `FeedFormatError` saying what
arrived instead, so the fetcher can log it and retry; a single unusable item becomes a `Rejected` and the
rest of the document is still used.

Within an item, identity, title and abstract are required and checked strictly. Auxiliary fields (dates,
upvotes, a PDF link) that do not parse are dropped rather than costing the paper.

The arXiv id is the identity that lets the same paper from several sources become one listing, so it is
normalised here to the versionless form arXiv itself uses, with the version kept apart.
"""

from __future__ import annotations

import codecs
import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from digest.ingest.formats import (
    MAX_ABSTRACT_CHARS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    ParsedListing,
    ParseResult,
    Rejected,
    clean_text,
)

# Far above any real response (the arXiv API caps a page at 2000 entries); anything bigger is not a feed.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_DOI_CHARS = 200

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DUBLIN_CORE = "{http://purl.org/dc/elements/1.1/}"
RDF_ROOT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"

ARXIV_API_ERROR_PREFIX = "arxiv.org/api/errors"
HUGGINGFACE_PAPERS_URL = "https://huggingface.co/papers/"


class FeedFormatError(ValueError):
    """The whole document is unusable; the message says what was received instead of a feed."""


# --- Identity ----------------------------------------------------------------------------------------

# Archives that existed before the April 2007 switch to "YYMM.NNNN" identifiers.
_OLD_STYLE_ARCHIVES = frozenset(
    {
        "acc-phys", "adap-org", "alg-geom", "ao-sci", "astro-ph", "atom-ph", "bayes-an", "chao-dyn",
        "chem-ph", "cmp-lg", "comp-gas", "cond-mat", "cs", "dg-ga", "funct-an", "gr-qc", "hep-ex",
        "hep-lat", "hep-ph", "hep-th", "math", "math-ph", "mtrl-th", "nlin", "nucl-ex", "nucl-th",
        "patt-sol", "physics", "plasm-ph", "q-alg", "q-bio", "quant-ph", "solv-int", "supr-con",
    }
)  # fmt: skip
_FIRST_NEW_STYLE_MONTH = 704

_NEW_STYLE_ID = re.compile(r"(?P<yymm>\d{4})\.(?P<number>\d{4,5})(?:v(?P<version>\d{1,3}))?")
_OLD_STYLE_ID = re.compile(
    r"(?P<archive>[A-Za-z]+(?:-[A-Za-z]+)?)(?:\.(?P<subject>[A-Za-z]+(?:-[A-Za-z]+)?))?"
    r"/(?P<number>\d{7})(?:v(?P<version>\d{1,3}))?"
)
_ARXIV_ID_PREFIX = re.compile(r"(?:arxiv:|oai:arxiv\.org:)\s*", re.IGNORECASE)
_ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
_HUGGINGFACE_HOSTS = frozenset({"huggingface.co", "www.huggingface.co"})
_ARXIV_URL_PATH = re.compile(r"/(?:abs|pdf|html)/(?P<id>.+?)(?:\.pdf)?/?")
_HUGGINGFACE_URL_PATH = re.compile(r"/papers/(?P<id>[^/]+)/?")
_SCHEMELESS_HOSTS = tuple(f"{host}/" for host in (*_ARXIV_HOSTS, *_HUGGINGFACE_HOSTS))
# No identifier or URL for one is anywhere near this long; the cap keeps junk from being scanned.
_MAX_IDENTIFIER_INPUT_CHARS = 500


def normalize_arxiv_id(raw: str) -> tuple[str, int | None] | None:
    """The versionless arXiv id and the version, from any of the forms sources write an id in, so the same
    paper met as "arXiv:2401.01234", an abs URL and "2401.01234v2" is recognised as one.

    Old-style ids are the archive and number only: "math.GT/0309136" is "math/0309136". Anything that
    is not an arXiv id, including a DOI, gives None.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_IDENTIFIER_INPUT_CHARS:
        return None
    candidate = _identifier_part(text)
    return None if candidate is None else _split_bare_arxiv_id(candidate)


def _identifier_part(text: str) -> str | None:
    if "://" in text or text.lower().startswith(_SCHEMELESS_HOSTS):
        url = text if "://" in text else f"https://{text}"
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return None
        if parts.scheme.lower() not in ("http", "https"):
            return None
        path = unquote(parts.path)
        if host in _ARXIV_HOSTS:
            match = _ARXIV_URL_PATH.fullmatch(path)
        elif host in _HUGGINGFACE_HOSTS:
            match = _HUGGINGFACE_URL_PATH.fullmatch(path)
        else:
            return None
        return match["id"] if match else None
    prefix = _ARXIV_ID_PREFIX.match(text)
    return text[prefix.end() :] if prefix else text


def _valid_month(yymm: str) -> bool:
    return 1 <= int(yymm[2:]) <= 12


def _split_bare_arxiv_id(candidate: str) -> tuple[str, int | None] | None:
    if new_style := _NEW_STYLE_ID.fullmatch(candidate):
        yymm = new_style["yymm"]
        if int(yymm) < _FIRST_NEW_STYLE_MONTH or not _valid_month(yymm):
            return None
        identifier, raw_version = f"{yymm}.{new_style['number']}", new_style["version"]
    elif old_style := _OLD_STYLE_ID.fullmatch(candidate):
        archive = old_style["archive"].lower()
        if archive not in _OLD_STYLE_ARCHIVES or not _valid_month(old_style["number"][:4]):
            return None
        # "math.GT/0309136" names the subject class too, but the paper's identifier is "math/0309136".
        identifier, raw_version = f"{archive}/{old_style['number']}", old_style["version"]
    else:
        return None
    if raw_version is None:
        return identifier, None
    version = int(raw_version)
    return (identifier, version) if version >= 1 else None


_DOI_PREFIX = re.compile(r"(?:https?://(?:www\.|dx\.)?doi\.org/|doi:\s*|doi\s+|info:doi/)", re.IGNORECASE)
_DOI = re.compile(r"10\.\d{4,9}/\S+")


def normalize_doi(raw: str) -> str | None:
    """The DOI in lowercase without a resolver prefix, as DOIs compare case-insensitively and sources
    write them as bare names, "doi:" names or resolver URLs."""
    text = raw.strip()
    if len(text) > _MAX_IDENTIFIER_INPUT_CHARS:
        return None
    if prefix := _DOI_PREFIX.match(text):
        is_url = "://" in prefix.group()
        text = text[prefix.end() :]
        if is_url:
            text = unquote(text.split("#", 1)[0])
    if len(text) > MAX_DOI_CHARS or not _DOI.fullmatch(text):
        return None
    return text.lower()


def arxiv_abs_url(arxiv_id: str) -> str:
    """The one URL a paper is linked by, whichever source reported it."""
    return f"https://arxiv.org/abs/{arxiv_id}"


# --- Text ------------------------------------------------------------------------------------------

# A tag only when it is shaped like one, so "a < b and c > d" in a title survives. Possessive quantifiers
# keep a long run of almost-tags from backtracking.
_HTML_TAG = re.compile(
    r"<!--.{0,2000}?-->"
    r"|</?(?P<name>[A-Za-z][\w:-]*+)"
    r"(?:\s++[\w:-]++\s*+=\s*+(?:\"[^\"]*+\"|'[^']*+'|[^\s\"'<>=`]++))*+"
    r"\s*+/?>",
    re.DOTALL,
)
# Tags that separate words; any other tag (<i>, <sub>, <span>) sits inside a word as often as between two.
_WORD_BREAKING_TAGS = frozenset(
    {
        "br", "p", "div", "li", "ul", "ol", "tr", "td", "th",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "blockquote",
    }
)  # fmt: skip
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _plain_text(raw: str) -> str:
    """Titles and abstracts arrive with HTML in them (escaped once or twice); the digest shows plain text.
    Only complete entities are decoded, so "R&D" and "&param" stay as written."""
    without_tags = _HTML_TAG.sub(_tag_replacement, raw) if "<" in raw else raw
    unescaped = _ENTITY.sub(lambda match: html.unescape(match.group()), without_tags)
    return clean_text(unescaped)


def _tag_replacement(tag: re.Match[str]) -> str:
    name = tag["name"]
    return " " if name is None or name.lower() in _WORD_BREAKING_TAGS else ""


def _preview(text: str, limit: int = 60) -> str:
    flat = " ".join(text[: limit * 4].split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _item_label(position: int, arxiv_id: str | None) -> str:
    return f"item {position} ({arxiv_id})" if arxiv_id else f"item {position}"


def _checked_paper(  # noqa: PLR0911 - one early return per way a feed item is unusable
    position: int,
    label: str,
    raw_title: str | None,
    raw_abstract: str | None,
    field_names: tuple[str, str],
    **fields: Any,
) -> ParseResult:
    title_name, abstract_name = field_names
    if raw_title is None:
        return Rejected(position, f"{label}: missing {title_name}")
    if raw_abstract is None:
        return Rejected(position, f"{label}: missing {abstract_name}")
    title = _plain_text(raw_title)
    abstract = _plain_text(raw_abstract)
    if not title:
        return Rejected(position, f"{label}: empty {title_name}")
    if not abstract:
        return Rejected(position, f"{label}: empty {abstract_name}")
    if len(title) > MAX_TITLE_CHARS:
        return Rejected(
            position, f"{label}: {title_name} longer than {MAX_TITLE_CHARS} characters ({len(title)})"
        )
    if len(abstract) > MAX_ABSTRACT_CHARS:
        return Rejected(
            position,
            f"{label}: {abstract_name} longer than {MAX_ABSTRACT_CHARS} characters ({len(abstract)})",
        )
    return ParsedListing(line=position, title=title, abstract=abstract, **fields)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def _http_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    url = raw.strip()
    if not url or len(url) > MAX_URL_CHARS or any(char.isspace() for char in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _iso_date(raw: object) -> date | None:
    """The day as the source wrote it: a paper announced late on the 22nd is not moved to the 23rd by UTC."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        pass
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _rfc822_date(raw: str | None) -> date | None:
    if not raw or not raw.strip():
        return None
    try:
        return parsedate_to_datetime(raw.strip()).date()
    except (TypeError, ValueError, IndexError, OverflowError):
        return _iso_date(raw)


def _arxiv_links(arxiv_id: str, pdf: str | None = None) -> dict[str, str]:
    links = {"arxiv": arxiv_abs_url(arxiv_id)}
    if pdf:
        links["pdf"] = pdf
    return links


# --- Sniffing what actually arrived ------------------------------------------------------------------

_SNIFF_BYTES = 4096
_TITLE_SEARCH_BYTES = 64 * 1024
_XML_PROLOG_NOISE = re.compile(r"(?:\s+|<\?xml[^>]*>|<!--.*?-->)*", re.DOTALL)
_HTML_OPENINGS = ("<!doctype html", "<html", "<head", "<body", "<title", "<meta")
_FEED_OR_DATA_OPENINGS = ("<rss", "<feed", "<rdf", "<?xml", "{", "[")
_HTML_TITLE = re.compile(r"<title\b[^>]{0,500}>(.{0,2000}?)</title\s*>", re.IGNORECASE | re.DOTALL)
_MAX_PAGE_TITLE_CHARS = 120


def _document_opening(body: bytes) -> str:
    head = body[:_SNIFF_BYTES].removeprefix(codecs.BOM_UTF8).decode("latin-1")
    prolog = _XML_PROLOG_NOISE.match(head)
    return head[prolog.end() if prolog else 0 :].lower()


def _html_page_title(body: bytes, content_type: str) -> tuple[bool, str | None]:
    opening = _document_opening(body)
    media_type = content_type.split(";", 1)[0].strip().lower()
    is_html = opening.startswith(_HTML_OPENINGS) or (
        media_type in ("text/html", "application/xhtml+xml")
        and not opening.startswith(_FEED_OR_DATA_OPENINGS)
    )
    if not is_html:
        return False, None
    found = _HTML_TITLE.search(body[:_TITLE_SEARCH_BYTES].decode("utf-8", errors="replace"))
    title = _plain_text(found.group(1)) if found else ""
    if len(title) > _MAX_PAGE_TITLE_CHARS:
        title = title[: _MAX_PAGE_TITLE_CHARS - 1] + "…"
    return True, title or None


def looks_like_html(body: bytes, content_type: str = "") -> str | None:
    """Sources answer rate limits and outages with an HTML page and status 200; spotting one turns a
    baffling parse error into "got an HTML page titled 'Rate exceeded'"."""
    is_html, title = _html_page_title(body, content_type)
    if not is_html:
        return None
    return title or "an HTML page"


def _describe_unexpected(body: bytes) -> str | None:
    """What a body that is plainly not the expected kind of document is, or None to let the parser say."""
    is_html, title = _html_page_title(body, "")
    if is_html:
        return f"an HTML page titled {title!r}" if title else "an HTML page"
    stripped = body[:_SNIFF_BYTES].removeprefix(codecs.BOM_UTF8).strip()
    if not stripped:
        return "an empty document"
    return None


def _refuse_oversized(body: bytes) -> None:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FeedFormatError(
            f"document of {len(body)} bytes is larger than the {MAX_DOCUMENT_BYTES} allowed"
        )


# --- XML ---------------------------------------------------------------------------------------------

_XML_ENCODING_DECLARATION = re.compile(rb"<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._:-]{1,40})[\"']")


def _decode(body: bytes, declared: str | None) -> str:
    if body.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = declared or "utf-8"
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise FeedFormatError(f"declares an unknown encoding {encoding!r}") from None
    try:
        return body.decode(codec.name)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if codec.name.startswith("utf-8") else encoding
        raise FeedFormatError(f"not valid {name} at byte {exc.start}") from None


def _decode_xml(body: bytes) -> str:
    """Decode before expat sees the document, so bad bytes are reported by offset and any encoding
    Python knows works, not only the few expat has built in."""
    declaration = _XML_ENCODING_DECLARATION.match(body[:400].lstrip())
    return _decode(body, declaration.group(1).decode("ascii") if declaration else None)


def _qualified(expat_name: str) -> str:
    # expat joins namespace and local name with the separator; ElementTree spells it "{namespace}local".
    return "{" + expat_name if "}" in expat_name else expat_name


def _refuse_entity_declaration(name: str, *_details: object) -> None:
    # Feeds never declare entities; refusing the first declaration stops entity-expansion bombs before any
    # expansion happens.
    raise FeedFormatError(f"XML declares an entity ({name!r}), which feeds never need; refusing to expand it")


def _refuse_external_entity(*_details: object) -> int:
    raise FeedFormatError("XML refers to an external entity; refusing to load it")


_TRUNCATION_ERRORS = frozenset(
    expat.errors.codes[message]
    for message in (expat.errors.XML_ERROR_NO_ELEMENTS, expat.errors.XML_ERROR_UNCLOSED_TOKEN)
)


def _parse_xml(body: bytes, expected: str) -> Element:
    _refuse_oversized(body)
    if (unexpected := _describe_unexpected(body)) is not None:
        raise FeedFormatError(f"expected {expected}, got {unexpected}")
    opening = body[:_SNIFF_BYTES].removeprefix(codecs.BOM_UTF8).lstrip()
    if opening.startswith((b"{", b"[")):
        raise FeedFormatError(f"expected {expected}, got a JSON document")
    if not opening.startswith(b"<") and not body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        shown = opening[:60].decode("utf-8", errors="replace")
        raise FeedFormatError(f"expected {expected}, got text starting {_preview(shown)}")

    text = _decode_xml(body)
    builder = TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _refuse_entity_declaration
    parser.ExternalEntityRefHandler = _refuse_external_entity

    def start(name: str, attributes: dict[str, str]) -> None:
        builder.start(_qualified(name), {_qualified(key): value for key, value in attributes.items()})

    def end(name: str) -> None:
        builder.end(_qualified(name))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        reason = expat.errors.messages.get(exc.code, str(exc))
        hint = " (the document ends early: truncated?)" if exc.code in _TRUNCATION_ERRORS else ""
        raise FeedFormatError(f"malformed XML at line {exc.lineno}: {reason}{hint}") from None
    return builder.close()


def _describe_root(root: Element) -> str:
    if root.tag == f"{ATOM}feed":
        return "an Atom feed"
    if root.tag == "rss":
        return "an RSS feed"
    if root.tag == RDF_ROOT:
        return "an RSS 1.0 (RDF) feed"
    local_name = root.tag.rsplit("}", 1)[-1]
    return f"an XML document whose root element is <{local_name}>"


def _text(element: Element | None) -> str | None:
    """All the text inside an element, markup included as text, or None when the element is absent."""
    if element is None:
        return None
    return "".join(element.itertext())


def _child_text(parent: Element, tag: str) -> str | None:
    return _text(parent.find(tag))


def _count(parent: Element, tag: str) -> int | None:
    raw = _child_text(parent, tag)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _names(raw_names: Iterable[str | None]) -> list[str]:
    return _unique(_plain_text(name) for name in raw_names if name)


# --- arXiv API (Atom) --------------------------------------------------------------------------------


@dataclass
class AtomPage:
    """One page of an arXiv API query, with the paging numbers the caller needs to ask for the next."""

    items: list[ParseResult]
    total_results: int | None
    start_index: int | None
    items_per_page: int | None


def parse_arxiv_atom(body: bytes) -> AtomPage:
    """Read a response of the arXiv API (export.arxiv.org/api/query). An API error (a bad query, an
    unknown id) arrives as a normal-looking feed holding one "Error" entry; it raises FeedFormatError
    so it is never mistaken for an empty result."""
    root = _parse_xml(body, "an Atom feed")
    if root.tag != f"{ATOM}feed":
        raise FeedFormatError(f"expected an Atom feed, got {_describe_root(root)}")
    entries = root.findall(f"{ATOM}entry")
    for entry in entries:
        entry_id = (_child_text(entry, f"{ATOM}id") or "").strip()
        if ARXIV_API_ERROR_PREFIX in entry_id:
            message = _plain_text(_child_text(entry, f"{ATOM}summary") or "") or entry_id
            raise FeedFormatError(f"arXiv API error: {message}")
    return AtomPage(
        items=[_api_entry(position, entry) for position, entry in enumerate(entries, start=1)],
        total_results=_count(root, f"{OPENSEARCH}totalResults"),
        start_index=_count(root, f"{OPENSEARCH}startIndex"),
        items_per_page=_count(root, f"{OPENSEARCH}itemsPerPage"),
    )


def _api_pdf_link(entry: Element) -> str | None:
    for link in entry.findall(f"{ATOM}link"):
        if link.get("title") == "pdf" or link.get("type") == "application/pdf":
            url = _http_url(link.get("href"))
            # The API still writes http:// links; arXiv serves everything over https.
            if url is not None and url.startswith("http://arxiv.org/"):
                url = "https://" + url.removeprefix("http://")
            return url
    return None


def _api_entry(position: int, entry: Element) -> ParseResult:
    raw_id = _child_text(entry, f"{ATOM}id")
    if raw_id is None or not raw_id.strip():
        return Rejected(position, f"item {position}: missing <id>")
    identity = normalize_arxiv_id(raw_id)
    if identity is None:
        return Rejected(position, f"item {position}: <id> is not an arXiv id: {_preview(raw_id)}")
    arxiv_id, version = identity
    raw_doi = _child_text(entry, f"{ARXIV}doi")
    primary = entry.find(f"{ARXIV}primary_category")
    categories = [primary.get("term", "") if primary is not None else ""]
    categories += [category.get("term", "") for category in entry.findall(f"{ATOM}category")]
    return _checked_paper(
        position,
        _item_label(position, arxiv_id),
        _child_text(entry, f"{ATOM}title"),
        _child_text(entry, f"{ATOM}summary"),
        ("<title>", "<summary>"),
        external_id=arxiv_id,
        url=arxiv_abs_url(arxiv_id),
        authors=_names(_child_text(author, f"{ATOM}name") for author in entry.findall(f"{ATOM}author")),
        published=_iso_date(_child_text(entry, f"{ATOM}published") or _child_text(entry, f"{ATOM}updated")),
        arxiv_id=arxiv_id,
        version=version,
        doi=normalize_doi(raw_doi) if raw_doi else None,
        categories=_unique(clean_text(term) for term in categories),
        links=_arxiv_links(arxiv_id, _api_pdf_link(entry)),
    )


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
_AUTHOR_SEPARATOR = re.compile(r",|\s+and\s+")


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
    elif root.tag == f"{ATOM}feed":
        items = root.findall(f"{ATOM}entry")
    else:
        raise FeedFormatError(f"expected an RSS or Atom feed, got {_describe_root(root)}")
    return [_announcement_item(position, item) for position, item in enumerate(items, start=1)]


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
    return _names(name for creator in creators for name in _AUTHOR_SEPARATOR.split(_plain_text(creator)))


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


# --- Hugging Face daily papers (JSON) ----------------------------------------------------------------

_JSON_KINDS: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
_MAX_SHOWN_KEYS = 8
_MAX_UPVOTES = 2**31 - 1


def _json_kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _describe_json(value: object) -> str:
    if not isinstance(value, dict):
        return _json_kind(value)
    if not value:
        return "an empty object"
    keys = [str(key) for key in value][:_MAX_SHOWN_KEYS]
    described = f"an object with keys {', '.join(keys)}"
    error = value.get("error")
    if isinstance(error, str) and error.strip():
        described += f" (error: {_preview(error)})"
    return described


def _load_json(body: bytes, expected: str) -> Any:
    _refuse_oversized(body)
    if (unexpected := _describe_unexpected(body)) is not None:
        raise FeedFormatError(f"expected {expected}, got {unexpected}")
    text = _decode(body, None)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # An unterminated string runs to the end of the document, so it too means the end went missing.
        ends_early = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        hint = " (the document ends early: truncated?)" if ends_early else ""
        raise FeedFormatError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}"
        ) from None
    except RecursionError:
        raise FeedFormatError("malformed JSON: nested too deeply") from None
    except ValueError as exc:
        # Python refuses integers with thousands of digits rather than spend quadratic time on them.
        raise FeedFormatError(f"malformed JSON: {exc}") from None


def parse_hf_daily(body: bytes) -> list[ParseResult]:
    """Read the Hugging Face daily papers list (huggingface.co/api/daily_papers). Every entry is an arXiv
    paper, so it is linked on arXiv as well as on its Hugging Face page."""
    document = _load_json(body, "a JSON list of papers")
    if not isinstance(document, list):
        raise FeedFormatError(f"expected a JSON list of papers, got {_describe_json(document)}")
    return [_hf_entry(position, entry) for position, entry in enumerate(document, start=1)]


def _optional_json_text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _hf_authors(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    names: list[str | None] = []
    for author in value:
        if isinstance(author, dict):
            names.append(_optional_json_text(author, "name"))
        elif isinstance(author, str):
            names.append(author)
    return _names(names)


def _hf_upvotes(*candidates: object) -> int | None:
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_UPVOTES:
            return value
    return None


def _hf_entry(position: int, entry: object) -> ParseResult:
    if not isinstance(entry, dict):
        return Rejected(position, f"item {position}: expected an object, got {_json_kind(entry)}")
    paper = entry.get("paper")
    if not isinstance(paper, dict):
        found = "missing" if paper is None else f"{_json_kind(paper)} instead of an object"
        return Rejected(position, f"item {position}: 'paper' is {found}")
    raw_id = paper.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        return Rejected(position, f"item {position}: missing 'paper.id'")
    identity = normalize_arxiv_id(raw_id)
    if identity is None:
        return Rejected(position, f"item {position}: 'paper.id' is not an arXiv id: {_preview(raw_id)}")
    arxiv_id, version = identity
    page_url = HUGGINGFACE_PAPERS_URL + arxiv_id
    return _checked_paper(
        position,
        _item_label(position, arxiv_id),
        _optional_json_text(paper, "title") or _optional_json_text(entry, "title"),
        _optional_json_text(paper, "summary") or _optional_json_text(entry, "summary"),
        ("'title'", "'summary'"),
        external_id=arxiv_id,
        url=page_url,
        authors=_hf_authors(paper.get("authors")),
        published=_iso_date(paper.get("publishedAt")) or _iso_date(entry.get("publishedAt")),
        arxiv_id=arxiv_id,
        version=version,
        upvotes=_hf_upvotes(paper.get("upvotes"), entry.get("upvotes")),
        links={"arxiv": arxiv_abs_url(arxiv_id), "huggingface": page_url},
    )
