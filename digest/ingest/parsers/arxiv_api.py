"""The arXiv API (Atom): one page of search results, with paging totals."""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element

from digest.ingest.formats import (
    ParseResult,
    Rejected,
    clean_text,
)
from digest.ingest.parsers.common import (
    ARXIV,
    ARXIV_API_ERROR_PREFIX,
    ATOM,
    OPENSEARCH,
    FeedFormatError,
    _arxiv_links,
    _checked_paper,
    _child_text,
    _count,
    _describe_root,
    _http_url,
    _iso_date,
    _item_label,
    _names,
    _parse_xml,
    _plain_text,
    _preview,
    _unique,
)
from digest.ingest.parsers.identity import arxiv_abs_url, normalize_arxiv_id, normalize_doi

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
