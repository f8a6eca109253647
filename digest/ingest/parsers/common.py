"""What the source parsers share: limits, namespaces, the feed error, text cleaning, sniffing what
arrived, and XML parsed safely."""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Iterable
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit
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
from digest.ingest.parsers.identity import arxiv_abs_url

# Far above any real response (the arXiv API caps a page at 2000 entries); anything bigger is not a feed.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DUBLIN_CORE = "{http://purl.org/dc/elements/1.1/}"
RDF_ROOT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"

ARXIV_API_ERROR_PREFIX = "arxiv.org/api/errors"
HUGGINGFACE_PAPERS_URL = "https://huggingface.co/papers/"


class FeedFormatError(ValueError):
    """The whole document is unusable; the message says what was received instead of a feed."""


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
# The elements that feeds really put in titles and abstracts (HTML formatting and MathML). Anything else
# in angle brackets is text: papers about language models name tokens such as <think>, <answer> or <pad>
# all the time. <s>, <u> and <q> are left out on purpose: "<s>" is far more often a sentence token.
_MARKUP_ELEMENTS = _WORD_BREAKING_TAGS | frozenset(
    {
        "a", "abbr", "b", "big", "cite", "code", "em", "font", "i", "kbd", "mark", "small", "span",
        "strong", "sub", "sup", "tt", "var", "table", "tbody", "thead", "img", "center",
        "math", "mi", "mn", "mo", "ms", "mrow", "msub", "msup", "msubsup", "mfrac", "msqrt", "mroot",
        "mtext", "mstyle", "mover", "munder", "munderover", "mspace", "semantics", "annotation",
    }
)  # fmt: skip
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _plain_text(raw: str) -> str:
    """Titles and abstracts as the digest shows them: plain text.

    Sources do send HTML formatting (arXiv's older RSS descriptions and API entries, escaped; names in
    Hugging Face's JSON), but only the elements such feeds use are removed, so a bracketed token in a
    title or abstract survives. Only complete entities are decoded, so "R&D" and "&param" stay as written."""
    without_tags = _HTML_TAG.sub(_tag_replacement, raw) if "<" in raw else raw
    unescaped = _ENTITY.sub(lambda match: html.unescape(match.group()), without_tags)
    return clean_text(unescaped)


def _tag_replacement(tag: re.Match[str]) -> str:
    name = tag["name"]
    if name is None:  # a comment
        return " "
    lowered = name.lower()
    if lowered not in _MARKUP_ELEMENTS:
        return tag.group(0)
    return " " if lowered in _WORD_BREAKING_TAGS else ""


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
    """Author names in order. Not de-duplicated: two authors of one paper may share a name."""
    return [name for raw in raw_names if raw and (name := _plain_text(raw))]
