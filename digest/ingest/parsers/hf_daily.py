"""Hugging Face daily papers (JSON), with upvotes."""

from __future__ import annotations

import json
import re
from typing import Any

from digest.ingest.formats import (
    ParseResult,
    Rejected,
)
from digest.ingest.parsers.common import (
    HUGGINGFACE_PAPERS_URL,
    FeedFormatError,
    _checked_paper,
    _decode,
    _describe_unexpected,
    _iso_date,
    _item_label,
    _names,
    _preview,
    _refuse_oversized,
)
from digest.ingest.parsers.identity import arxiv_abs_url, normalize_arxiv_id

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
    if text.lstrip("\ufeff \t\r\n").startswith("<"):
        raise FeedFormatError(f"expected {expected}, got XML ({_xml_root_name(text)}) instead of JSON")
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


def _xml_root_name(text: str) -> str:
    """The first element's name, such as <rss> or <feed>, to say which XML arrived."""
    for match in re.finditer(r"<([A-Za-z][\w:.-]*)", text[:4096]):
        return f"<{match.group(1)}>"
    return "no element"


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
        # One rule for every source: a paper with an arXiv id links to its arXiv abstract page; the
        # Hugging Face page stays in `links`.
        url=arxiv_abs_url(arxiv_id),
        authors=_hf_authors(paper.get("authors")),
        published=_iso_date(paper.get("publishedAt")) or _iso_date(entry.get("publishedAt")),
        arxiv_id=arxiv_id,
        version=version,
        upvotes=_hf_upvotes(paper.get("upvotes"), entry.get("upvotes")),
        links={"arxiv": arxiv_abs_url(arxiv_id), "huggingface": page_url},
    )
