from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from premailer import Premailer

from digest.mail.render import (
    SNIPPET_CHARS,
    TEMPLATES_DIR,
    Renderer,
    TemplateInlineError,
    inline_css,
    inline_template_css,
    meta_line,
    trim_abstract,
)
from tests.support.html import canonical

# One paper of the text part: its rank and title, its link, its reason, meta and PDF lines, then the votes.
ITEM = re.compile(
    r"^(?P<rank>\d+)\. (?P<title>.+)\n(?:   (?P<url>https?://\S+)\n)?"
    r"(?P<details>(?:   (?!More like this: |Less like this: ).+\n)*)"
    r"   More like this: (?P<more>\S+)\n   Less like this: (?P<less>\S+)\n(?:\n|$)",
    re.MULTILINE,
)
LONG_ABSTRACT = " ".join(["Low-rank adapters make fine tuning cheap; we study when they fail."] * 20)


def item(rank: int, title: str, url: str | None = "https://arxiv.org/abs/2611.00001", **extra: Any) -> dict:
    base = {
        "rank": rank,
        "title": title,
        "url": url,
        "abstract": trim_abstract(LONG_ABSTRACT),
        "reason": "Matches your topics: lora, fine tuning",
        "authors": ["Ada Lovelace", "Alan Turing"],
        "pdf_url": "https://arxiv.org/pdf/2611.00001",
        "arxiv_id": "2611.00001",
        "category": "cs.LG",
        "published": date(2026, 11, 20),
        "more_url": f"https://digest.example.org/feedback/more-{rank}",
        "less_url": f"https://digest.example.org/feedback/less-{rank}",
    }
    base.update(extra)
    base.setdefault(
        "meta", meta_line(tuple(base["authors"]), base["arxiv_id"], base["category"], base["published"])
    )
    return base


def digest_context(items: list[dict], **extra: Any) -> dict[str, Any]:
    context = {
        "subscriber_email": "reader@example.org",
        "topics": ["lora", "fine tuning"],
        "schedule": "every Friday at 07:00 Europe/Berlin",
        "digest_date": date(2026, 11, 23),
        "items": items,
        "trending": [],
        "unsubscribe_url": "https://digest.example.org/unsubscribe/tok-u",
        "preferences_url": "https://digest.example.org/preferences/tok-p",
        "view_url": "https://digest.example.org/archive/tok-v",
        "archive_url": "https://digest.example.org/archive/tok-a",
    }
    context.update(extra)
    return context


SAMPLES: dict[str, dict[str, Any]] = {
    "plain": digest_context([item(1, "Efficient LoRA for everyone"), item(2, "Adapters revisited")]),
    "hostile": digest_context(
        [
            item(
                1,
                "<script>alert(1)</script> & <b>bold</b> \"quoted\" 'single'",
                url="https://example.org/a?x=1&y=<2>",
                abstract="Abstract with <img src=x onerror=alert(1)> & an &amp; entity",
                reason="Matches your topics: <i>lora</i> & co",
                authors=["O'Brien & Sons", "<Mallory>"],
                more_url="https://digest.example.org/feedback/a?b=1&c=2",
            ),
            item(2, "No link at all", url=None, authors=[], abstract=""),
        ],
        topics=["<script>", "a & b"],
        subscriber_email="o'brien+tag@example.org",
    ),
    "unicode_and_long": digest_context(
        [
            item(
                rank,
                f"Über-effiziente Diffusion für Bilder — 漢字 ✓ {rank}\n   across   lines",
                url="https://example.org/papers/a paper é" if rank % 2 else None,
                authors=[f"Author Ñumber {n}" for n in range(7)],
            )
            for rank in range(1, 8)
        ],
        topics=["diffusion", "Bildgenerierung"],
    ),
    "single": digest_context([item(1, "Only one")]),
    "with_trending": digest_context(
        [item(1, "A pick")],
        trending=[item(1, "Most upvoted <today>", reason="120 upvotes today"), item(2, "Second", url=None)],
    ),
    "empty": digest_context([]),
}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer.default()


@pytest.fixture(scope="module")
def uninlined() -> Renderer:
    return Renderer(TEMPLATES_DIR, preinline=False)


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_inlining_the_template_once_equals_inlining_each_email(
    renderer: Renderer, uninlined: Renderer, sample: str
) -> None:
    context = SAMPLES[sample]
    fast = renderer.render("digest", context).html
    slow = inline_css(uninlined.render("digest", context).html)
    assert canonical(fast) == canonical(slow)
    assert 'style="' in fast and "<style" in uninlined.render("digest", context).html


def test_confirm_email_inlined_once_equals_inlined_per_email(renderer: Renderer, uninlined: Renderer) -> None:
    context = {
        "email": "new@example.org",
        "topic_count": 2,
        "cadence": "daily",
        "confirm_url": "https://digest.example.org/confirm/abc.def?x=1&y=2",
    }
    fast = renderer.render("confirm", context).html
    slow = inline_css(uninlined.render("confirm", context).html)
    assert canonical(fast) == canonical(slow)


def test_only_media_rules_stay_in_the_head(renderer: Renderer) -> None:
    html = renderer.render("digest", SAMPLES["plain"]).html
    tree = lxml.html.document_fromstring(html)
    (style,) = tree.xpath("//head/style")
    css = style.text_content()
    assert "prefers-color-scheme: dark" in css and "max-width: 620px" in css
    outside_media = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", css)
    assert outside_media.strip() == ""
    (button,) = tree.xpath("//a[normalize-space()='More like this']")[:1]
    assert "display:inline-block" in button.get("style")
    assert tree.xpath("//table[@role='presentation']")
    assert tree.get("lang") == "en"


def test_text_part_lists_each_paper_in_the_parseable_format(renderer: Renderer) -> None:
    context = SAMPLES["unicode_and_long"]
    text = renderer.render("digest", context).text
    found = [m.groupdict() for m in ITEM.finditer(text)]
    assert len(found) == len(context["items"])
    for parsed, source in zip(found, context["items"], strict=True):
        assert parsed["rank"] == str(source["rank"])
        assert parsed["title"] == " ".join(source["title"].split())
        if source["url"] is None:
            assert parsed["url"] is None
        else:
            assert parsed["url"] == source["url"].replace(" ", "%20")
        assert parsed["more"] == source["more_url"]
        assert parsed["less"] == source["less_url"]
    block = text[text.index("1. ") :].split("\n\n")[0].splitlines()
    assert block == [
        f"1. {' '.join(context['items'][0]['title'].split())}",
        "   https://example.org/papers/a%20paper%20é",
        "   Why: Matches your topics: lora, fine tuning",
        "   Author Ñumber 0, Author Ñumber 1, Author Ñumber 2 et al."
        " · arXiv:2611.00001 · cs.LG · 20 Nov 2026",
        "   PDF: https://arxiv.org/pdf/2611.00001",
        "   More like this: https://digest.example.org/feedback/more-1",
        "   Less like this: https://digest.example.org/feedback/less-1",
    ]
    second = text[text.index("2. ") :].split("\n\n")[0].splitlines()
    assert len(second) == 6 and not second[1].startswith("   http")
    assert "Preferences: https://digest.example.org/preferences/tok-p" in text.splitlines()
    assert "Unsubscribe: https://digest.example.org/unsubscribe/tok-u" in text.splitlines()


def test_markup_in_titles_is_escaped_in_html_and_literal_in_text(renderer: Renderer) -> None:
    email = renderer.render("digest", SAMPLES["hostile"])
    tree = lxml.html.document_fromstring(email.html)
    assert not tree.xpath("//script | //img | //b | //i | //mallory")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<script>alert(1)</script>" in tree.text_content()

    assert "1. <script>alert(1)</script> & <b>bold</b> \"quoted\" 'single'\n" in email.text
    assert "&lt;" not in email.text and "&amp;" not in email.text.replace("an &amp; entity", "")
    assert "&#39;" not in email.text and "o'brien+tag@example.org" in email.text
    assert "   https://example.org/a?x=1&y=<2>\n" in email.text
    # A paper without a URL is not linked in the HTML either.
    (no_link,) = [h for h in tree.xpath("//h2") if "No link at all" in h.text_content()]
    assert not no_link.xpath(".//a")


def test_a_title_with_newlines_cannot_forge_text_lines(renderer: Renderer) -> None:
    forged = "Real title\n\n2. Fake\n   More like this: https://evil.example/x\n   Less like this: https://evil.example/y"
    text = renderer.render("digest", digest_context([item(1, forged)])).text
    assert len(list(ITEM.finditer(text))) == 1


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, "Your paper digest for Mon 23 Nov 2026: 1 new paper"),
        (7, "Your paper digest for Mon 23 Nov 2026: 7 new papers"),
        (0, "Your paper digest for Mon 23 Nov 2026: 0 new papers"),
    ],
)
def test_subject_counts_papers(renderer: Renderer, count: int, expected: str) -> None:
    context = digest_context([item(rank, f"Paper {rank}") for rank in range(1, count + 1)])
    assert renderer.render("digest", context).subject == expected


def test_confirm_email(renderer: Renderer) -> None:
    context = {
        "email": "new@example.org",
        "topic_count": 1,
        "cadence": "daily",
        "confirm_url": "https://digest.example.org/confirm/tok.sig",
    }
    email = renderer.render("confirm", context)
    assert email.subject == "Confirm your paper digest subscription"
    assert "https://digest.example.org/confirm/tok.sig\n" in email.text
    expected = "a daily email digest of new research papers on 1 topic to be sent to new@example.org"
    assert expected in email.text
    assert "ignore this email" in email.text
    tree = lxml.html.document_fromstring(email.html)
    assert tree.xpath("//a[@href='https://digest.example.org/confirm/tok.sig']")
    assert tree.xpath("//li") == []


def test_a_missing_context_value_fails_loudly(renderer: Renderer) -> None:
    context = dict(SAMPLES["plain"])
    del context["unsubscribe_url"]
    with pytest.raises(Exception, match="unsubscribe_url"):
        renderer.render("digest", context)
    with pytest.raises(ValueError):
        renderer.render("../web/confirm", context)


@pytest.fixture
def premailer_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real premailer runs: the wrapper calls straight through to the library."""
    calls: list[int] = []
    real_transform: Callable[..., Any] = Premailer.transform

    def counting_transform(self: Premailer, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real_transform(self, *args, **kwargs)

    monkeypatch.setattr(Premailer, "transform", counting_transform)
    return calls


def copy_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR / "email", target / "email")
    return target


def test_the_template_is_inlined_once_for_many_emails(premailer_calls: list[int], tmp_path: Path) -> None:
    renderer = Renderer(copy_templates(tmp_path))
    htmls = {
        renderer.render("digest", SAMPLES["plain"] | {"subscriber_email": f"r{n}@x.org"}).html
        for n in range(50)
    }
    assert len(htmls) == 50
    assert all('style="' in html for html in htmls)
    assert len(premailer_calls) == 1


def test_an_edited_template_is_inlined_again(premailer_calls: list[int], tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    renderer = Renderer(templates)
    assert "#1f5fa8" in renderer.render("digest", SAMPLES["plain"]).html
    renderer.render("digest", SAMPLES["plain"])
    assert len(premailer_calls) == 1

    body = templates / "email" / "digest" / "body.html"
    body.write_text(body.read_text(encoding="utf-8").replace("#1f5fa8", "#ab3412"), encoding="utf-8")
    stat = body.stat()
    os.utime(body, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    html = renderer.render("digest", SAMPLES["plain"]).html
    assert "#ab3412" in html and "#1f5fa8" not in html
    assert len(premailer_calls) == 2


def test_subject_is_one_line_whatever_the_template(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    (templates / "email" / "digest" / "subject.txt").write_text(
        "Digest\r\nBcc: victim@example.org\n  for {{ subscriber_email }}\n", encoding="utf-8"
    )
    subject = Renderer(templates).render("digest", SAMPLES["plain"]).subject
    assert subject == "Digest Bcc: victim@example.org for reader@example.org"


def test_jinja_survives_inlining_in_attributes_text_and_title() -> None:
    source = (
        "<!DOCTYPE html>\n<html><head><title>{{ a < b }} & x</title>"
        "<style>.k { color: red; }</style></head><body>"
        '<table>{% for x in xs %}<tr><td class="k"><a href="{{ x.url ~ "?q=1 2" }}" title=\'{{ "it" }}s\'>'
        "{{ x.name }}</a>{# note #}</td></tr>{% endfor %}</table></body></html>"
    )
    out = inline_template_css(source)
    for construct in re.findall(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", source):
        assert out.count(construct) == 1
    assert 'class="k" style="color:red"' in out


def test_jinja_where_it_cannot_be_inlined_is_refused() -> None:
    with pytest.raises(TemplateInlineError, match="style"):
        inline_template_css("<html><head><style>.a { color: {{ c }}; }</style></head><body></body></html>")
    with pytest.raises(TemplateInlineError, match="quoted attribute"):
        inline_template_css('<html><body><a {{ attrs }} href="x">y</a></body></html>')


def test_trim_abstract() -> None:
    assert trim_abstract("  short\n abstract ") == "short abstract"
    trimmed = trim_abstract(LONG_ABSTRACT)
    assert SNIPPET_CHARS - 30 < len(trimmed) <= SNIPPET_CHARS and trimmed.endswith("…")
    assert LONG_ABSTRACT.startswith(trimmed[:-1])
    assert LONG_ABSTRACT[len(trimmed) - 1] in " ;."  # the cut fell between words
    assert trim_abstract("one two three", limit=8) == "one two…"
    assert trim_abstract("x" * 50, limit=10) == "x" * 9 + "…"
    exact = "a" * SNIPPET_CHARS
    assert trim_abstract(exact) == exact
