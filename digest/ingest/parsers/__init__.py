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

from digest.ingest.parsers.arxiv_api import AtomPage, parse_arxiv_atom
from digest.ingest.parsers.arxiv_rss import Announcement, parse_announcement, parse_arxiv_rss
from digest.ingest.parsers.common import FeedFormatError, looks_like_html
from digest.ingest.parsers.hf_daily import parse_hf_daily
from digest.ingest.parsers.identity import arxiv_abs_url, normalize_arxiv_id, normalize_doi

__all__ = [
    "Announcement",
    "AtomPage",
    "FeedFormatError",
    "arxiv_abs_url",
    "looks_like_html",
    "normalize_arxiv_id",
    "normalize_doi",
    "parse_announcement",
    "parse_arxiv_atom",
    "parse_arxiv_rss",
    "parse_hf_daily",
]
