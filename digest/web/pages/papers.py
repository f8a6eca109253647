"""A paper's own page: where a title with no link of its own leads, from the email and the site."""

from __future__ import annotations

from urllib.parse import quote_plus

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from digest.mail.digest_email import paper_details
from digest.models import Listing
from digest.web.pages.common import Web, is_web_url


def paper_links(listing: Listing) -> list[tuple[str, str]]:
    """Where to read the paper: its own page and PDF when known, else searches that find it by title."""
    links: list[tuple[str, str]] = []
    if is_web_url(listing.url):
        links.append(("Abstract page", str(listing.url)))
    pdf = paper_details(listing)["pdf_url"]
    if isinstance(pdf, str):
        links.append(("PDF", pdf))
    links.extend(
        (name, str(url))
        for name, url in sorted((listing.links or {}).items())
        if name != "pdf" and is_web_url(url)
    )
    title = quote_plus(listing.title)
    links.append(("Search arXiv", f"https://arxiv.org/search/?query={title}&searchtype=title"))
    links.append(("Search Semantic Scholar", f"https://www.semanticscholar.org/search?q={title}"))
    links.append(("Search Google Scholar", f"https://scholar.google.com/scholar?q={title}"))
    unique: dict[str, str] = {}
    for name, url in links:
        unique.setdefault(url, name)
    return [(name, url) for url, name in unique.items()]


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/papers/{listing_id}", name="paper", include_in_schema=False)
    def paper(request: Request, listing_id: str) -> HTMLResponse:
        listing = web.core.paper(int(listing_id)) if listing_id.isdigit() and len(listing_id) < 12 else None
        if listing is None:
            raise StarletteHTTPException(404)
        return web.pages.page(
            request,
            "paper.html",
            {
                "title": listing.title,
                "authors": list(listing.authors or []),
                "abstract": listing.abstract,
                "published": listing.published,
                "arxiv_id": listing.arxiv_id,
                "categories": list(listing.categories or []),
                "links": paper_links(listing),
            },
        )

    return router
