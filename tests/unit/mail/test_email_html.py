"""The HTML emails as a mail client gets them: size, structure, links, and the text part beside them.

Parsed with the standard library's html.parser, which sees what a client's parser sees: Outlook's
conditional comments are comments, so only the markup every client renders is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest

from digest.mail.compose import HTML_LIMIT_BYTES
from digest.mail.digest_email import LONG_DIGEST_SNIPPET_CHARS
from digest.mail.render import (
    SNIPPET_CHARS,
    TEMPLATES_DIR,
    RenderedEmail,
    Renderer,
    inline_css,
    meta_line,
    trim_abstract,
)
from digest.subscribers.subscriptions import MAX_DIGEST_SIZE
from tests.support.html import canonical

BASE = "https://digest.example.org"
# As long as the signed tokens digest.mail.links makes: 76 characters for a feedback link.
TOKEN = "WyJxM2JfWkxzTjRvUW1ZcVhwR0V2c2l3Iiw0MjQyNDIsMV0.k7yH0c2bqJ1Q0v3ZlR3m9sPqW8dX"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
LONG_ABSTRACT = " ".join(
    ["We study parameter-efficient fine-tuning of large diffusion transformers and find that rank matters."]
    * 12
)


def paper(rank: int, section: str = "picks", snippet: int = SNIPPET_CHARS, **extra: Any) -> dict[str, Any]:
    """A paper as digest_context makes it, with a long title, a long author list, a trimmed abstract and
    every detail of its meta line."""
    base: dict[str, Any] = {
        "rank": rank,
        "title": (
            f"Scaling Laws for Parameter-Efficient Fine-Tuning of Diffusion Transformers: Low-Rank Adapters, "
            f"Mixture-of-Experts Routing and What Breaks at Scale ({section} {rank})"
        ),
        "url": f"https://arxiv.org/abs/2611.{rank:05d}",
        "abstract": trim_abstract(LONG_ABSTRACT, snippet),
        "reason": "Matches your topics: lora, parameter-efficient fine-tuning, diffusion transformers",
        "authors": [f"Maximiliane Oberhuber-Lindqvist {n}" for n in range(40)],
        "pdf_url": f"https://arxiv.org/pdf/2611.{rank:05d}",
        "arxiv_id": f"2611.{rank:05d}",
        "category": "cs.LG",
        "published": date(2026, 11, 20),
        "more_url": f"{BASE}/feedback/{TOKEN[:-5]}{section[0]}{rank:03}m",
        "less_url": f"{BASE}/feedback/{TOKEN[:-5]}{section[0]}{rank:03}l",
    }
    base.update(extra)
    base.setdefault(
        "meta", meta_line(tuple(base["authors"]), base["arxiv_id"], base["category"], base["published"])
    )
    return base


def digest_context(picks: int, trending: int = 0, **extra: Any) -> dict[str, Any]:
    # As digest_context shortens the snippets of a long digest.
    snippet = SNIPPET_CHARS if picks + trending <= 20 else LONG_DIGEST_SNIPPET_CHARS
    context: dict[str, Any] = {
        "subscriber_email": "a.very.long.reader.name@university.example.org",
        "topics": ["lora", "parameter-efficient fine-tuning", "diffusion transformers", "mixture of experts"],
        "schedule": "every Wednesday at 06:00 America/New_York",
        "digest_date": date(2026, 11, 23),
        "items": [paper(rank, snippet=snippet) for rank in range(1, picks + 1)],
        "trending": [
            paper(rank, "trending", snippet, reason=f"{400 - rank} upvotes today")
            for rank in range(1, trending + 1)
        ],
        "unsubscribe_url": f"{BASE}/unsubscribe/{TOKEN}",
        "preferences_url": f"{BASE}/preferences/{TOKEN}p",
        "view_url": f"{BASE}/archive/{TOKEN}v",
        "archive_url": f"{BASE}/archive/{TOKEN}a",
    }
    context.update(extra)
    return context


CONFIRM = {
    "email": "new.reader@example.org",
    "topic_count": 3,
    "cadence": "weekly",
    "confirm_url": f"{BASE}/confirm/{TOKEN}.{TOKEN[:27]}",
}
ALREADY = {
    "email": "known@example.org",
    "topics": ["lora", "diffusion models"],
    "schedule": "every day at 06:00 UTC",
    "preferences_url": f"{BASE}/preferences/{TOKEN}p",
    "archive_url": f"{BASE}/archive/{TOKEN}a",
    "unsubscribe_url": f"{BASE}/unsubscribe/{TOKEN}",
}
DIGESTS: dict[str, dict[str, Any]] = {
    "typical": digest_context(10),
    "largest": digest_context(MAX_DIGEST_SIZE, 3),
    "with_trending": digest_context(2, 3),
    "one_paper": digest_context(1, topics=["lora"]),
    "odd_values": digest_context(
        0,
        items=[
            paper(1, title="<b>Bold</b> & \"quoted\" 'titles'", url="https://example.org/a paper é?x=1&y=2"),
            # No URL of its own: digest_context links the service's page of it, and nothing else is known.
            paper(
                2,
                url=f"{BASE}/papers/2",
                authors=[],
                abstract="",
                pdf_url=None,
                arxiv_id=None,
                category=None,
                published=None,
            ),
            paper(3, authors=["Solo Author"], reason="Like “Earlier paper”, which you asked for more of"),
            # What digest_context never passes; the template still links nothing but http(s).
            paper(4, url="javascript:alert(1)", pdf_url="javascript:alert(2)", arxiv_id=None),
        ],
        topics=["<script>", "a & b"],
        subscriber_email="o'brien+tag@example.org",
    ),
}
EMAILS: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"digest-{name}": ("digest", context) for name, context in DIGESTS.items()},
    "confirm": ("confirm", CONFIRM),
    "already_subscribed": ("already_subscribed", ALREADY),
}


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str]
    hidden: bool
    text: str = ""
    ancestors: list[Element] = field(default_factory=list)

    @property
    def style(self) -> dict[str, str]:
        return parse_style(self.attrs.get("style", ""))


def parse_style(style: str) -> dict[str, str]:
    declarations = (part.split(":", 1) for part in style.split(";") if ":" in part)
    return {name.strip().lower(): value.strip().lower() for name, value in declarations}


class Document(HTMLParser):
    """Every element with its attributes, ancestors, text and whether a client would hide it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.doctype = ""
        self.elements: list[Element] = []
        self.css = ""
        self._open: list[Element] = []
        self.feed(html)
        self.close()
        assert not self._open, f"unclosed elements: {[e.tag for e in self._open]}"

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        hidden = bool(self._open and self._open[-1].hidden) or "none" in parse_style(
            values.get("style", "")
        ).get("display", "")
        element = Element(tag, values, hidden, ancestors=list(self._open))
        self.elements.append(element)
        if tag not in VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self._open and self._open[-1].tag == tag, f"</{tag}> closes <{self._open[-1].tag}>"
        self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data
        if self._open and self._open[-1].tag == "style":
            self.css += data

    def all(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]

    def links(self, text: str) -> list[Element]:
        return [a for a in self.all("a") if " ".join(a.text.split()) == text]


def text_url(url: str) -> str:
    """A link as the text part prints it (digest.mail.render's text_url filter)."""
    return re.sub(r"\s", lambda m: quote(m.group(0)), url.strip())


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer.default()


@pytest.fixture(scope="module")
def uninlined() -> Renderer:
    return Renderer(TEMPLATES_DIR, preinline=False)


@pytest.fixture(scope="module")
def rendered(renderer: Renderer) -> dict[str, RenderedEmail]:
    return {key: renderer.render(name, context) for key, (name, context) in EMAILS.items()}


# Size -----------------------------------------------------------------------------------------------


def test_the_largest_digest_stays_under_gmails_clipping_size(rendered: dict[str, RenderedEmail]) -> None:
    largest = len(rendered["digest-largest"].html.encode("utf-8"))
    typical = len(rendered["digest-typical"].html.encode("utf-8"))
    print(f"\nHTML bytes: 10 papers {typical}, {MAX_DIGEST_SIZE} papers + 3 trending {largest}")
    assert len(DIGESTS["largest"]["items"]) == 50 and len(DIGESTS["largest"]["trending"]) == 3
    assert largest < HTML_LIMIT_BYTES
    assert typical < 30_000


def test_the_size_check_uses_realistic_content(rendered: dict[str, RenderedEmail]) -> None:
    html = rendered["digest-largest"].html
    first = DIGESTS["largest"]["items"][0]
    assert len(first["title"]) > 150 and first["abstract"].endswith("…")
    assert LONG_DIGEST_SNIPPET_CHARS - 15 < len(first["abstract"]) <= LONG_DIGEST_SNIPPET_CHARS
    assert len(first["more_url"]) > 100
    # Every paper is there, in full, with its shortened author list and the rest of its meta line.
    document = Document(html)
    assert len(document.links("More like this")) == 53
    assert len(document.links("PDF")) == 53
    assert html.count("Maximiliane Oberhuber-Lindqvist 2 et al. · arXiv:2611.") == 53
    assert html.count(" · cs.LG · 20 Nov 2026 · ") == 53
    assert "Maximiliane Oberhuber-Lindqvist 3" not in html
    assert html.count(first["abstract"]) == 50


# Structure ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(EMAILS))
def test_document_shell(rendered: dict[str, RenderedEmail], key: str) -> None:
    document = Document(rendered[key].html)
    assert document.doctype.lower() == "doctype html"
    (html,) = document.all("html")
    assert html.attrs.get("lang") == "en"
    metas = document.all("meta")
    assert any("charset" in m.attrs for m in metas)
    named = {m.attrs["name"]: m.attrs.get("content", "") for m in metas if "name" in m.attrs}
    assert named["color-scheme"] == "light dark"
    assert named["supported-color-schemes"] == "light dark"
    assert "width=device-width" in named["viewport"]
    (title,) = document.all("title")
    assert title.text.strip()
    assert "@media (prefers-color-scheme: dark)" in document.css
    assert all(style.ancestors[-1].tag == "head" for style in document.all("style"))


@pytest.mark.parametrize("key", sorted(EMAILS))
def test_layout_tables_are_presentational_and_fluid(rendered: dict[str, RenderedEmail], key: str) -> None:
    document = Document(rendered[key].html)
    tables = document.all("table")
    assert tables
    for table in tables:
        assert table.attrs.get("role") == "presentation", table.attrs
        assert (
            table.attrs.get("cellpadding"),
            table.attrs.get("cellspacing"),
            table.attrs.get("border"),
        ) == (
            "0",
            "0",
            "0",
        )
    outer, box = tables[0], tables[1]
    assert outer.attrs["width"] == "100%"
    assert box.attrs["width"] == "600"
    assert box.style["max-width"] == "600px" and box.style["width"] == "100%"
    for element in document.elements:
        width = element.attrs.get("width", "")
        if width.isdigit():
            assert int(width) <= 600, element.attrs
            # A fixed width a phone cannot fit must give way to CSS that clients on phones apply.
            if int(width) > 320:
                assert element.style.get("width") == "100%", element.attrs
        for name in ("width", "min-width", "max-width"):
            value = element.style.get(name, "")
            if value.endswith("px"):
                assert int(value[:-2]) <= (600 if name == "max-width" else 320), element.attrs


@pytest.mark.parametrize("key", sorted(EMAILS))
def test_each_block_sets_its_own_background_and_text_colour(
    rendered: dict[str, RenderedEmail], key: str
) -> None:
    document = Document(rendered[key].html)
    box = document.all("table")[1]
    blocks = [e for e in document.all("td") if len(e.ancestors) >= 2 and e.ancestors[-2] is box]
    assert len(blocks) >= 2
    for block in blocks:
        assert re.fullmatch(r"#[0-9a-f]{6}", block.attrs.get("bgcolor", "")), block.attrs
        assert "color" in block.style, block.attrs


@pytest.mark.parametrize("key", sorted(EMAILS))
def test_readable_without_images(rendered: dict[str, RenderedEmail], key: str) -> None:
    document = Document(rendered[key].html)
    assert all(img.attrs.get("alt") is not None for img in document.all("img"))
    assert not any(e.attrs.get("background") for e in document.elements)
    # Every link, buttons included, is real text.
    assert all(" ".join(a.text.split()) for a in document.all("a"))


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_digest_preheader_view_link_papers_and_footer(rendered: dict[str, RenderedEmail], name: str) -> None:
    context = DIGESTS[name]
    document = Document(rendered[f"digest-{name}"].html)
    (body,) = document.all("body")
    first_in_body = next(e for e in document.elements if body in e.ancestors)
    assert first_in_body.hidden, "the preheader must come first and be hidden"
    preheader = " ".join(first_in_body.text.split())
    if context["items"]:
        assert " ".join(context["items"][0]["title"].split()) in preheader
        assert preheader.startswith(f"{len(context['items'])} new paper")
    # The spacer keeps the body from running on into the preview line.
    assert first_in_body.text.count("\u034f") >= 40

    (view,) = document.links("View in browser")
    assert view.attrs["href"] == context["view_url"] and not view.hidden
    anchors = document.all("a")
    assert anchors.index(view) == 0

    for item in context["items"] + context["trending"]:
        (more,) = [a for a in anchors if a.attrs["href"] == item["more_url"]]
        (less,) = [a for a in anchors if a.attrs["href"] == item["less_url"]]
        assert " ".join(more.text.split()) == "More like this"
        assert " ".join(less.text.split()) == "Less like this"
        for button in (more, less):
            cell = button.ancestors[-1]
            assert cell.tag == "td" and "bgcolor" in cell.attrs and not button.hidden

    headings = [" ".join(h.text.split()) for h in document.all("h2")]
    for item in context["items"]:
        assert f"{item['rank']}. {' '.join(item['title'].split())}" in headings
    if context["trending"]:
        assert "Trending today" in headings
    else:
        assert "Trending today" not in rendered[f"digest-{name}"].html

    header = " ".join(document.all("h1")[0].ancestors[-1].text.split())
    assert "Mon 23 Nov 2026" in header
    assert ", ".join(context["topics"]) in header

    (unsubscribe,) = document.links("Unsubscribe")
    assert unsubscribe.attrs["href"] == context["unsubscribe_url"]
    assert not unsubscribe.hidden and "font-size" not in unsubscribe.style
    (preferences,) = document.links("Preferences")
    assert preferences.attrs["href"] == context["preferences_url"]
    (archive,) = document.links("Past digests")
    assert archive.attrs["href"] == context["archive_url"]
    footer = " ".join(unsubscribe.ancestors[-2].text.split())
    assert f"because {context['subscriber_email']} subscribed" in footer
    assert ", ".join(context["topics"]) in footer


def test_digest_paper_details(rendered: dict[str, RenderedEmail]) -> None:
    document = Document(rendered["digest-odd_values"].html)
    headings = document.all("h2")
    cells = [td for td in document.all("td") if any(h.ancestors[-1] is td for h in headings)]
    linked, bare, solo, hostile = (" ".join(td.text.split()) for td in cells)
    assert "<b>Bold</b> & \"quoted\" 'titles'" in linked
    assert (
        "Maximiliane Oberhuber-Lindqvist 0, Maximiliane Oberhuber-Lindqvist 1, "
        "Maximiliane Oberhuber-Lindqvist 2 et al. · arXiv:2611.00001 · cs.LG · 20 Nov 2026 · PDF"
    ) in linked
    assert "Why: Matches your topics" in linked
    # Unknown details are left out, with no stray separator.
    assert "et al." not in bare and "Why:" in bare and "·" not in bare and "PDF" not in bare
    assert "Solo Author · arXiv:2611.00003" in solo and "et al." not in solo
    assert "Why: Like “Earlier paper”, which you asked for more of" in solo

    title_links = [a for a in document.all("a") if a.ancestors[-1].tag == "h2"]
    assert [a.attrs["href"] for a in title_links] == [
        "https://example.org/a paper é?x=1&y=2",
        f"{BASE}/papers/2",
        "https://arxiv.org/abs/2611.00003",
    ]
    assert not any(a.attrs["href"].startswith("javascript:") for a in document.all("a"))
    assert "PDF" not in hostile
    (pdf,) = [a for a in document.links("PDF") if a.ancestors[-2] is cells[0]]
    assert pdf.attrs["href"] == "https://arxiv.org/pdf/2611.00001"

    # The reason is the line right under the title, in its own colour rather than the meta line's grey.
    for heading, cell in zip(headings, cells, strict=True):
        following = document.elements[document.elements.index(heading) + 1 :]
        reason = next(e for e in following if e.ancestors and e.ancestors[-1] is cell)
        assert reason.text.startswith("Why:")
        assert reason.style["color"] == "#0b6e5a"
    meta = next(e for e in document.all("div") if e.text.startswith("Maximiliane"))
    assert meta.style["color"] != "#0b6e5a" and meta.style["font-size"] == "12px"


def test_confirm_email(rendered: dict[str, RenderedEmail]) -> None:
    email = rendered["confirm"]
    document = Document(email.html)
    url = CONFIRM["confirm_url"]
    (button,) = document.links("Confirm my subscription")
    assert button.attrs["href"] == url
    assert button.ancestors[-1].tag == "td" and "bgcolor" in button.ancestors[-1].attrs
    # The plain URL is printed too, for clients that mangle buttons.
    (printed,) = [a for a in document.all("a") if a.text.strip() == url]
    assert printed.attrs["href"] == url
    line = "If you did not ask for this, ignore this email; nothing will be sent."
    body = " ".join(document.all("body")[0].text.split())
    assert line in body
    assert line in email.text
    # Only our own words: the count of topics, not the topics a stranger may have typed.
    assert document.all("li") == []
    expected = "a weekly email digest of new research papers on 3 topics to be sent to new.reader@example.org"
    assert expected in body
    assert [a.attrs["href"] for a in document.all("a")] == [url, url]
    first_in_body = next(e for e in document.elements if document.all("body")[0] in e.ancestors)
    assert first_in_body.hidden and "One click" in first_in_body.text


def test_already_subscribed_email(renderer: Renderer, rendered: dict[str, RenderedEmail]) -> None:
    email = rendered["already_subscribed"]
    assert email.subject == "You already receive the paper digest"
    document = Document(email.html)
    body = " ".join(document.all("body")[0].text.split())
    assert "Someone (hopefully you) asked to subscribe known@example.org" in body
    assert "already receives" in body and "lora, diffusion models" in body
    assert "If that wasn't you, you can ignore this email" in body
    (button,) = document.links("Change topics or schedule")
    assert button.attrs["href"] == ALREADY["preferences_url"]
    assert "bgcolor" in button.ancestors[-1].attrs
    (unsubscribe,) = document.links("Unsubscribe")
    assert unsubscribe.attrs["href"] == ALREADY["unsubscribe_url"] and not unsubscribe.hidden
    assert {a.attrs["href"] for a in document.all("a")} == {
        ALREADY["preferences_url"],
        ALREADY["archive_url"],
        ALREADY["unsubscribe_url"],
    }
    for phrase in (
        "Someone (hopefully you)",
        "known@example.org",
        "If that wasn't you",
        "lora, diffusion models",
    ):
        assert phrase in email.text
    hostile = renderer.render("already_subscribed", ALREADY | {"email": "<b>x</b>@example.org"})
    assert "<b>x</b>" not in hostile.html and "&lt;b&gt;x&lt;/b&gt;@example.org" in hostile.html


# The text part --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(EMAILS))
def test_the_text_part_has_every_link_of_the_html_part(rendered: dict[str, RenderedEmail], key: str) -> None:
    email = rendered[key]
    hrefs = {a.attrs["href"] for a in Document(email.html).all("a")}
    assert hrefs
    text_lines = {line.strip().split(": ", 1)[-1] for line in email.text.splitlines()}
    missing = {href for href in hrefs if text_url(href) not in text_lines}
    assert not missing


@pytest.mark.parametrize(
    "key", ["digest-typical", "digest-largest", "digest-odd_values", "already_subscribed"]
)
def test_the_text_part_ends_with_the_unsubscribe_link(rendered: dict[str, RenderedEmail], key: str) -> None:
    _, context = EMAILS[key]
    text = rendered[key].text
    assert text.rstrip("\n").splitlines()[-1] == f"Unsubscribe: {context['unsubscribe_url']}"


def test_the_digest_text_part_opens_with_the_view_in_browser_link(rendered: dict[str, RenderedEmail]) -> None:
    lines = rendered["digest-typical"].text.splitlines()
    assert lines[0] == "Your paper digest for Mon 23 Nov 2026"
    assert lines[2] == f"View it in your browser: {DIGESTS['typical']['view_url']}"
    assert f"Past digests: {DIGESTS['typical']['archive_url']}" in lines
    assert f"Preferences: {DIGESTS['typical']['preferences_url']}" in lines


# Inlining once per template -------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(EMAILS))
def test_inlined_once_equals_inlined_per_email(
    renderer: Renderer, uninlined: Renderer, rendered: dict[str, RenderedEmail], key: str
) -> None:
    name, context = EMAILS[key]
    slow_source = uninlined.render(name, context).html
    assert "<style" in slow_source
    assert canonical(rendered[key].html) == canonical(inline_css(slow_source))


def test_media_rules_survive_inlining(rendered: dict[str, RenderedEmail]) -> None:
    for key in EMAILS:
        css = Document(rendered[key].html).css
        assert "@media (prefers-color-scheme: dark)" in css and "!important" in css
        assert "@media screen and (max-width: 620px)" in css


def test_a_digest_too_big_for_gmail_is_rendered_again_with_shorter_abstracts() -> None:
    from digest.mail.compose import HTML_LIMIT_BYTES
    from digest.mail.digest_email import render_within_limit

    renderer = Renderer.default()
    # Untrimmed 1,200-character abstracts on 53 papers: far over the limit as they are.
    huge = digest_context(0)
    huge["items"] = [paper(rank, abstract=LONG_ABSTRACT) for rank in range(1, MAX_DIGEST_SIZE + 1)]
    huge["trending"] = [paper(rank, "trending", abstract=LONG_ABSTRACT) for rank in range(1, 4)]
    assert len(renderer.render("digest", huge).html.encode()) > HTML_LIMIT_BYTES
    fitted = render_within_limit(renderer, huge)
    assert len(fitted.html.encode()) <= HTML_LIMIT_BYTES
    assert huge["unsubscribe_url"] in fitted.html and "Unsubscribe" in fitted.html
    assert fitted.html.count(">More like this<") == MAX_DIGEST_SIZE + 3  # every paper is still there

    typical = digest_context(10, 3)
    assert render_within_limit(renderer, typical) == renderer.render("digest", typical)


def test_the_footer_states_the_readers_own_schedule(rendered: dict[str, RenderedEmail]) -> None:
    email = rendered["digest-typical"]
    assert "every Wednesday at 06:00 America/New_York" in " ".join(
        Document(email.html).all("body")[0].text.split()
    )
    assert "every Wednesday at 06:00 America/New_York" in email.text
    assert "daily" not in email.text.lower()
