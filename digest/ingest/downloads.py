"""Downloading one source's documents: conditional GETs of the feeds, paged arXiv API queries."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from digest.ingest.fetching import FetchResult, HttpClient
from digest.ingest.formats import ParseResult, Rejected
from digest.ingest.parsers import parse_arxiv_atom, parse_arxiv_rss, parse_hf_daily
from digest.models import Source

log = logging.getLogger(__name__)

ARXIV_API_URL = "https://export.arxiv.org/api/query"
ARXIV_RSS_URL = "https://rss.arxiv.org/rss/{category}"
HF_DAILY_URL = "https://huggingface.co/api/daily_papers"


@dataclass
class Download:
    """What a fetch brought back before anything is stored."""

    items: list[ParseResult] = field(default_factory=list)
    http_status: int | None = None
    not_modified: bool = True
    cache: dict[str, dict[str, str]] = field(default_factory=dict)


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
    download = Download(cache=dict(source.http_cache))
    template = source.config.get("url") or ARXIV_RSS_URL
    for category in source.config["categories"]:
        url = template.format(category=category)
        result = conditional_get(client, source, url, download)
        if not result.not_modified:
            download.items.extend(parse_arxiv_rss(result.body))
    return download


def download_hf_daily(client: HttpClient, source: Source) -> Download:
    download = Download(cache=dict(source.http_cache))
    result = conditional_get(client, source, source.config.get("url") or HF_DAILY_URL, download)
    if not result.not_modified:
        download.items.extend(parse_hf_daily(result.body))
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
    for page in range(max_pages):
        result = client.get(
            config.get("url") or ARXIV_API_URL,
            params={
                "search_query": search,
                "sortBy": "submittedDate",
                "sortOrder": "descending",
                "start": page * page_size,
                "max_results": page_size,
            },
        )
        download.http_status = result.status
        parsed = parse_arxiv_atom(result.body)
        download.items.extend(parsed.items)
        ids = {item.arxiv_id for item in parsed.items if not isinstance(item, Rejected) and item.arxiv_id}
        unseen = sorted(ids - fetched_ids)
        fetched_ids |= ids
        total = parsed.total_results
        if not parsed.items or (ids and known(unseen) == len(unseen)):
            break
        if total is not None and (page + 1) * page_size >= total:
            break
    return download
