"""Downloading one source's documents: conditional GETs of the feeds, paged arXiv API queries."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from digest.ingest.fetching import FetchError, FetchResult, HttpClient
from digest.ingest.formats import ParseResult, Rejected
from digest.ingest.parsers import parse_arxiv_atom, parse_arxiv_rss, parse_hf_daily
from digest.ingest.parsers.common import FeedFormatError
from digest.models import Source

log = logging.getLogger(__name__)

ARXIV_API_URL = "https://export.arxiv.org/api/query"
ARXIV_RSS_URL = "https://rss.arxiv.org/rss/{category}"
HF_DAILY_URL = "https://huggingface.co/api/daily_papers"


@dataclass
class Download:
    """What a fetch brought back before anything is stored. `failures` names each part of the source
    (a category) that failed while others came through; their papers are kept."""

    items: list[ParseResult] = field(default_factory=list)
    http_status: int | None = None
    not_modified: bool = True
    cache: dict[str, dict[str, str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


class DocumentError(FeedFormatError):
    """A response that arrived (with its HTTP status) but is not the document the source should send."""

    def __init__(self, url: str, status: int, problem: str) -> None:
        super().__init__(f"GET {url} (HTTP {status}): {problem}")
        self.url = url
        self.status = status


def _parsed(result: FetchResult, url: str, parse: Callable[[bytes], Any]) -> Any:
    try:
        return parse(result.body)
    except DocumentError:
        raise
    except FeedFormatError as exc:
        raise DocumentError(url, result.status, str(exc)) from exc


def conditional_get(
    client: HttpClient, source: Source, url: str, download: Download, **kwargs: Any
) -> FetchResult:
    validators = source.http_cache.get(url, {})
    result = client.get(
        url, etag=validators.get("etag"), last_modified=validators.get("last_modified"), **kwargs
    )
    download.http_status = result.status
    if not result.not_modified:
        download.not_modified = False
        fresh = {k: v for k, v in (("etag", result.etag), ("last_modified", result.last_modified)) if v}
        if fresh:
            download.cache[url] = fresh
    return result


def download_arxiv_rss(client: HttpClient, source: Source) -> Download:
    """Each category on its own: one that fails is named with its URL, and the others' papers are kept.
    Only when every category fails does the fetch fail as a whole (with the first error)."""
    download = Download(cache=dict(source.http_cache))
    template = source.config.get("url") or ARXIV_RSS_URL
    first_error: Exception | None = None
    categories = source.config["categories"]
    for category in categories:
        url = template.format(category=category)
        try:
            result = conditional_get(client, source, url, download)
            if not result.not_modified:
                download.items.extend(_parsed(result, url, parse_arxiv_rss))
        except (FetchError, FeedFormatError) as exc:
            first_error = first_error or exc
            download.failures.append(f"category {category}: {exc}")
    if first_error is not None and len(download.failures) == len(categories):
        if len(categories) == 1:
            raise first_error
        raise FeedFormatError("; ".join(download.failures)) from first_error
    return download


def download_hf_daily(client: HttpClient, source: Source) -> Download:
    download = Download(cache=dict(source.http_cache))
    url = source.config.get("url") or HF_DAILY_URL
    result = conditional_get(client, source, url, download)
    if not result.not_modified:
        download.items.extend(_parsed(result, url, parse_hf_daily))
    return download


def arxiv_search_query(categories: Sequence[str], query: str | None) -> str:
    parts = []
    if categories:
        parts.append("(" + " OR ".join(f"cat:{c}" for c in categories) + ")")
    if query:
        parts.append(f"({query})")
    return " AND ".join(parts)


def download_arxiv_api(client: HttpClient, source: Source, known: Callable[[list[str]], int]) -> Download:
    """Newest first, page by page, until a page holds nothing we have not seen or the pages run out."""
    download = Download(not_modified=False)
    config = source.config
    page_size, max_pages = int(config.get("page_size", 100)), int(config.get("max_pages", 3))
    search = arxiv_search_query(config.get("categories") or [], config.get("query"))
    fetched_ids: set[str] = set()
    start = 0
    for _page in range(max_pages):
        result = _api_get(
            client,
            config.get("url") or ARXIV_API_URL,
            {
                "search_query": search,
                "sortBy": "submittedDate",
                "sortOrder": "descending",
                "start": start,
                "max_results": page_size,
            },
        )
        download.http_status = result.status
        parsed = _parsed(result, result.url, parse_arxiv_atom)
        download.items.extend(parsed.items)
        ids = {item.arxiv_id for item in parsed.items if not isinstance(item, Rejected) and item.arxiv_id}
        unseen = sorted(ids - fetched_ids)
        fetched_ids |= ids
        total = parsed.total_results
        if not parsed.items or (ids and known(unseen) == len(unseen)):
            break
        # The next page starts after the entries this one really held: arXiv sometimes returns fewer
        # than asked, and stepping by the page size would skip the rest.
        start += len(parsed.items)
        if total is not None and start >= total:
            break
    return download


def _api_get(client: HttpClient, url: str, params: dict[str, str | int]) -> FetchResult:
    """A GET of the arXiv API; a refusal carrying an Atom error entry says arXiv's own words."""
    try:
        return client.get(url, params=params)
    except FetchError as exc:
        if exc.body:
            try:
                parse_arxiv_atom(exc.body)
            except FeedFormatError as explained:
                raise FetchError(
                    exc.url, exc.status, f"{exc.reason}: {explained}", exc.attempts, exc.retry_after, exc.body
                ) from exc
        raise
