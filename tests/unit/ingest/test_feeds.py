"""The external-source parsers on small invented documents, and the identity rules they share."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from digest.ingest.formats import MAX_ABSTRACT_CHARS, MAX_TITLE_CHARS, ParsedListing, Rejected
from digest.ingest.parsers import (
    Announcement,
    FeedFormatError,
    arxiv_abs_url,
    looks_like_html,
    normalize_arxiv_id,
    normalize_doi,
    parse_announcement,
    parse_arxiv_atom,
    parse_arxiv_rss,
    parse_hf_daily,
)
from tests.support.env import FIXTURES

FEEDS = FIXTURES / "feeds"


def fixture(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def listing(result: object) -> ParsedListing:
    assert isinstance(result, ParsedListing), result
    return result


def api_feed(*entries: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">\n'
        + "".join(entries)
        + "</feed>\n"
    ).encode()


def api_entry(entry_id: str, title: str, summary: str) -> str:
    return (
        f"<entry><id>http://arxiv.org/abs/{entry_id}</id><title>{title}</title>"
        f"<summary>{summary}</summary><published>2024-02-01T10:00:00Z</published></entry>\n"
    )


def atom_items(body: bytes) -> list[object]:
    return list(parse_arxiv_atom(body).items)


ALL_PARSERS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("arxiv_atom", parse_arxiv_atom),
    ("arxiv_rss", parse_arxiv_rss),
    ("hf_daily", parse_hf_daily),
]


# --- Identity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2401.01234", ("2401.01234", None)),
        ("2401.01234v2", ("2401.01234", 2)),
        ("  2401.01234v12 ", ("2401.01234", 12)),
        ("arXiv:2401.01234", ("2401.01234", None)),
        ("arxiv:2401.01234v3", ("2401.01234", 3)),
        ("oai:arXiv.org:2401.01234v1", ("2401.01234", 1)),
        ("1501.0001", ("1501.0001", None)),
        ("0704.0001", ("0704.0001", None)),
        ("1409.0473v1", ("1409.0473", 1)),
        ("hep-th/9901001v3", ("hep-th/9901001", 3)),
        ("hep-th/9901001", ("hep-th/9901001", None)),
        ("math.GT/0309136", ("math/0309136", None)),
        ("math.gt/0309136v2", ("math/0309136", 2)),
        ("math/0309136", ("math/0309136", None)),
        ("HEP-TH/9901001", ("hep-th/9901001", None)),
        ("arXiv:cond-mat/0011123", ("cond-mat/0011123", None)),
        ("http://arxiv.org/abs/2401.01234v2", ("2401.01234", 2)),
        ("https://arxiv.org/abs/2401.01234", ("2401.01234", None)),
        ("https://www.arxiv.org/abs/2401.01234v1", ("2401.01234", 1)),
        ("http://export.arxiv.org/abs/2401.01234v4", ("2401.01234", 4)),
        ("https://arxiv.org/pdf/2401.01234v2", ("2401.01234", 2)),
        ("https://arxiv.org/pdf/2401.01234v2.pdf", ("2401.01234", 2)),
        ("https://arxiv.org/pdf/2401.01234.pdf", ("2401.01234", None)),
        ("https://arxiv.org/abs/hep-th/9901001v3", ("hep-th/9901001", 3)),
        ("https://arxiv.org/pdf/math.GT/0309136.pdf", ("math/0309136", None)),
        ("https://arxiv.org/abs/2401.01234/", ("2401.01234", None)),
        ("https://arxiv.org/abs/2401.01234?context=cs", ("2401.01234", None)),
        ("arxiv.org/abs/2401.01234", ("2401.01234", None)),
        ("https://huggingface.co/papers/2401.01234", ("2401.01234", None)),
        ("https://huggingface.co/papers/2401.01234#community", ("2401.01234", None)),
        # Not arXiv ids.
        ("2401.1", None),
        ("2401.123", None),
        ("2401.123456", None),
        ("2413.01234", None),  # month 13
        ("0612.1234", None),  # before new-style ids existed
        ("2401.01234v0", None),
        ("2401.01234v", None),
        ("10.1000/xyz", None),
        ("https://doi.org/10.1000/xyz", None),
        ("Attention Is Not Quite All You Need", None),
        ("", None),
        ("   ", None),
        ("junk/9901001", None),
        ("hep-th/990100", None),
        ("https://example.org/abs/2401.01234", None),
        ("ftp://arxiv.org/abs/2401.01234", None),
        ("https://arxiv.org/list/cs.LG/new", None),
        ("https://huggingface.co/models/2401.01234", None),
        ("https://[broken/abs/2401.01234", None),
        ("2401.01234" + "9" * 1000, None),
    ],
)
def test_normalize_arxiv_id(raw: str, expected: tuple[str, int | None] | None) -> None:
    assert normalize_arxiv_id(raw) == expected


def test_two_versions_of_one_paper_share_an_id_and_differ_in_version() -> None:
    first = normalize_arxiv_id("http://arxiv.org/abs/2401.01234v1")
    second = normalize_arxiv_id("arXiv:2401.01234v2")
    assert first is not None and second is not None
    assert first[0] == second[0] == "2401.01234"
    assert (first[1], second[1]) == (1, 2)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.1000/xyz", "10.1000/xyz"),
        ("10.1000/XYZ", "10.1000/xyz"),
        ("doi:10.1000/xyz", "10.1000/xyz"),
        ("DOI: 10.1000/XyZ", "10.1000/xyz"),
        ("https://doi.org/10.1000/XYZ", "10.1000/xyz"),
        ("http://dx.doi.org/10.5555/Lantern.2024.001", "10.5555/lantern.2024.001"),
        ("https://doi.org/10.1000/a%2Fb", "10.1000/a/b"),
        ("  10.1103/PhysRevLett.99.010001 ", "10.1103/physrevlett.99.010001"),
        ("10.1000", None),
        ("10.10/short-registrant", None),
        ("2401.01234", None),
        ("https://arxiv.org/abs/2401.01234", None),
        ("not a doi", None),
        ("", None),
        ("10.1000/" + "x" * 300, None),
    ],
)
def test_normalize_doi(raw: str, expected: str | None) -> None:
    assert normalize_doi(raw) == expected


def test_arxiv_abs_url_is_versionless_https() -> None:
    assert arxiv_abs_url("2401.01234") == "https://arxiv.org/abs/2401.01234"
    assert arxiv_abs_url("hep-th/9901001") == "https://arxiv.org/abs/hep-th/9901001"


# --- arXiv API ---------------------------------------------------------------------------------------


def test_api_page_paging_numbers() -> None:
    page = parse_arxiv_atom(fixture("arxiv_api_page.xml"))
    assert (page.total_results, page.start_index, page.items_per_page) == (1342, 20, 4)
    assert len(page.items) == 4


def test_api_entry_fields() -> None:
    first = listing(parse_arxiv_atom(fixture("arxiv_api_page.xml")).items[0])
    assert first.line == 1
    assert first.arxiv_id == "2401.01234"
    assert first.version == 2
    assert first.external_id == "2401.01234"
    assert first.title == "Sparse Lantern Networks: Pruning by Candlelight"
    assert first.abstract.startswith(
        "We study an imaginary family of networks whose units glow only when they"
    )
    assert "  " not in first.abstract and "\n" not in first.abstract
    assert first.authors == ["Ada Quillfeather", "Borislav Tenk"]
    assert first.published == date(2024, 1, 3)
    assert first.doi == "10.5555/lantern.2024.001"
    assert first.categories == ["cs.LG", "stat.ML"]
    assert first.url == "https://arxiv.org/abs/2401.01234"
    assert first.links == {
        "arxiv": "https://arxiv.org/abs/2401.01234",
        "pdf": "https://arxiv.org/pdf/2401.01234v2",
    }
    assert first.upvotes is None


def test_api_old_style_entry_with_html_and_double_escaped_entities() -> None:
    second = listing(parse_arxiv_atom(fixture("arxiv_api_page.xml")).items[1])
    assert (second.arxiv_id, second.version) == ("hep-th/9901001", 3)
    assert second.title == "Chiral Teacups & Their Saucers"
    # A comparison in prose is not a tag and must survive the stripping.
    assert "when a < b and c > d, & never otherwise." in second.abstract
    # The primary category leads even though the feed lists another first.
    assert second.categories == ["hep-th", "math-ph", "math.MP"]
    assert second.published == date(1999, 1, 4)


def test_api_entry_missing_summary_is_rejected_by_name_and_siblings_parse() -> None:
    items = parse_arxiv_atom(fixture("arxiv_api_page.xml")).items
    assert items[2] == Rejected(3, "item 3 (2401.05555): missing <summary>")
    fourth = listing(items[3])
    assert (fourth.arxiv_id, fourth.version) == ("1409.0473", 1)
    assert fourth.categories == ["math.CO"]
    assert fourth.links == {"arxiv": "https://arxiv.org/abs/1409.0473"}


def test_api_empty_page_past_the_end() -> None:
    page = parse_arxiv_atom(fixture("arxiv_api_empty.xml"))
    assert page.items == []
    assert (page.total_results, page.start_index, page.items_per_page) == (1342, 2000, 100)


def test_api_error_entry_raises_with_the_error_text() -> None:
    with pytest.raises(FeedFormatError, match=r"arXiv API error: incorrect id format for 2401\.9"):
        parse_arxiv_atom(fixture("arxiv_api_error.xml"))


def test_api_entry_with_missing_or_foreign_id() -> None:
    body = api_feed(
        "<entry><title>No id here</title><summary>Text.</summary></entry>",
        "<entry><id>https://example.org/paper/7</id><title>Foreign</title><summary>Text.</summary></entry>",
        api_entry("2402.00001v1", "Kept", "Still parsed."),
    )
    items = atom_items(body)
    assert items[0] == Rejected(1, "item 1: missing <id>")
    assert isinstance(items[1], Rejected) and "item 2: <id> is not an arXiv id" in items[1].message
    assert listing(items[2]).title == "Kept"


def test_api_rejects_an_rss_document() -> None:
    with pytest.raises(FeedFormatError, match="expected an Atom feed, got an RSS feed"):
        parse_arxiv_atom(fixture("arxiv_rss.xml"))


def test_xhtml_title_content_is_read_as_text() -> None:
    entry = (
        "<entry><id>http://arxiv.org/abs/2402.00002</id>"
        '<title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
        "H<sub>2</sub>O at <i>Low</i> Tide</div></title><summary>Water, <br/>briefly.</summary></entry>"
    )
    parsed = listing(atom_items(api_feed(entry))[0])
    assert parsed.title == "H2O at Low Tide"
    assert parsed.abstract == "Water, briefly."


# --- Length limits -----------------------------------------------------------------------------------


def test_title_over_the_limit_is_rejected_while_siblings_parse() -> None:
    body = api_feed(
        api_entry("2402.00010", "Before", "Fine."),
        api_entry("2402.00011v1", "Long " * (MAX_TITLE_CHARS // 4), "Fine too."),
        api_entry("2402.00012", "After", "Also fine."),
    )
    items = atom_items(body)
    assert [listing(items[0]).title, listing(items[2]).title] == ["Before", "After"]
    rejected = items[1]
    assert isinstance(rejected, Rejected)
    assert rejected.line == 2
    assert rejected.message.startswith(
        f"item 2 (2402.00011): <title> longer than {MAX_TITLE_CHARS} characters"
    )


def test_abstract_over_the_limit_is_rejected_in_json_while_siblings_parse() -> None:
    papers = [
        {"paper": {"id": "2402.00020", "title": "Short", "summary": "Fine."}},
        {"paper": {"id": "2402.00021", "title": "Huge", "summary": "word " * (MAX_ABSTRACT_CHARS // 4)}},
        {"paper": {"id": "2402.00022", "title": "Also short", "summary": "Fine."}},
    ]
    items = parse_hf_daily(json.dumps(papers).encode())
    assert [listing(items[0]).arxiv_id, listing(items[2]).arxiv_id] == ["2402.00020", "2402.00022"]
    assert isinstance(items[1], Rejected)
    assert items[1].message.startswith(f"item 2 (2402.00021): 'summary' longer than {MAX_ABSTRACT_CHARS}")


def test_title_that_is_only_markup_is_rejected_as_empty() -> None:
    items = atom_items(api_feed(api_entry("2402.00030", "&lt;b&gt;&lt;/b&gt;", "Text.")))
    assert items == [Rejected(1, "item 1 (2402.00030): empty <title>")]


# --- arXiv announcement feeds ------------------------------------------------------------------------


def test_rss_items_fields() -> None:
    items = parse_arxiv_rss(fixture("arxiv_rss.xml"))
    assert len(items) == 4
    kettles = listing(items[0])
    assert (kettles.arxiv_id, kettles.version) == ("2401.11111", 1)
    assert kettles.title == "Teaching Kettles to Whistle in Tune"
    assert kettles.abstract == (
        "We fit a tiny model to the pitch of boiling kettles and retune them with a spoon. "
        "Four kettles out of five now whistle a clean A."
    )
    assert kettles.authors == ["Fenna Albrightson", "Gideon Marsh-Pell", "Hiroko Tamsin"]
    assert kettles.categories == ["cs.LG", "cs.SD"]
    assert kettles.published == date(2024, 1, 22)
    assert kettles.url == "https://arxiv.org/abs/2401.11111"
    assert kettles.links == {"arxiv": "https://arxiv.org/abs/2401.11111"}


def test_rss_replacement_keeps_version_and_drops_duplicate_categories() -> None:
    replaced = listing(parse_arxiv_rss(fixture("arxiv_rss.xml"))[1])
    assert (replaced.arxiv_id, replaced.version) == ("2401.01234", 2)
    assert replaced.categories == ["cs.LG", "stat.ML"]
    assert not replaced.abstract.startswith("arXiv:")


def test_rss_item_without_arxiv_id_is_rejected_and_the_next_one_parses() -> None:
    items = parse_arxiv_rss(fixture("arxiv_rss.xml"))
    assert items[2] == Rejected(3, "item 3: no arXiv id in <description>, <link> or id")
    cross = listing(items[3])
    assert (cross.arxiv_id, cross.version) == ("2401.22222", 3)
    assert cross.authors == ["Ingrid Sollway", "Jasper Oduya"]
    assert cross.abstract.endswith("drawn by a committee & checked by nobody.")


def test_rss_atom_flavour() -> None:
    items = parse_arxiv_rss(fixture("arxiv_rss_atom.xml"))
    knots, surgery = (listing(item) for item in items)
    assert (knots.arxiv_id, knots.version) == ("2401.33333", 1)
    assert knots.title == "Knots That Untie Themselves on Tuesdays"
    assert knots.abstract == "A census of fictional knots whose crossings relax one day a week."
    assert knots.authors == ["Kalinda Ferro", "Lucius Brandt"]
    assert knots.categories == ["math.GT", "math.CO"]
    assert knots.published == date(2024, 1, 22)
    assert (surgery.arxiv_id, surgery.version) == ("math/0309136", 2)
    assert surgery.url == "https://arxiv.org/abs/math/0309136"


def test_empty_rss_feed_is_a_quiet_day_not_an_error() -> None:
    assert parse_arxiv_rss(fixture("arxiv_rss_empty.xml")) == []


def test_latin1_document_declared_properly_decodes() -> None:
    (paper,) = parse_arxiv_rss(fixture("arxiv_rss_latin1.xml"))
    paper = listing(paper)
    assert paper.title == "Équations de la crème brûlée"
    assert "caramélisation" in paper.abstract and "180 °C" in paper.abstract
    assert paper.authors == ["Océane Müller", "Søren Ødegård"]


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        (
            "arXiv:2401.01234v2 Announce Type: replace \nAbstract: The text.",
            Announcement("2401.01234", 2, "replace", "The text."),
        ),
        (
            "arXiv:2401.22222v3 Announce Type: replace-cross\nAbstract: Cross text.",
            Announcement("2401.22222", 3, "replace-cross", "Cross text."),
        ),
        (
            "arXiv:hep-th/9901001v1 Announce Type: NEW Abstract: Old.",
            Announcement("hep-th/9901001", 1, "new", "Old."),
        ),
        (
            "arXiv:2401.01234 Abstract: No type given.",
            Announcement("2401.01234", None, None, "No type given."),
        ),
        ("Abstract: no identifier", None),
        ("arXiv:not-an-id Announce Type: new Abstract: x", None),
    ],
)
def test_parse_announcement(description: str, expected: Announcement | None) -> None:
    assert parse_announcement(description) == expected


def test_pre_2024_rss_item_with_title_suffix_and_html_description() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><item>
<title>Folding Paper Cranes at Scale. (arXiv:2301.00001v1 [cs.RO] UPDATED)</title>
<link>http://arxiv.org/abs/2301.00001</link>
<description>&lt;p&gt;An invented robot folds &lt;i&gt;a thousand&lt;/i&gt; cranes.&lt;/p&gt;</description>
</item></channel></rss>"""
    (result,) = parse_arxiv_rss(body)
    paper = listing(result)
    assert paper.title == "Folding Paper Cranes at Scale."
    assert paper.abstract == "An invented robot folds a thousand cranes."
    assert (paper.arxiv_id, paper.version) == ("2301.00001", None)


def test_rss_parser_rejects_other_xml() -> None:
    with pytest.raises(FeedFormatError, match=r"root element is <catalog>"):
        parse_arxiv_rss(b'<?xml version="1.0"?><catalog><book/></catalog>')


# --- Hugging Face daily papers -----------------------------------------------------------------------


def test_hf_daily_fields() -> None:
    items = parse_hf_daily(fixture("hf_daily.json"))
    assert len(items) == 5
    lantern = listing(items[0])
    assert (lantern.arxiv_id, lantern.version) == ("2401.01234", None)
    assert lantern.title == "Sparse Lantern Networks: Pruning by Candlelight"
    assert lantern.authors == ["Ada Quillfeather", "Borislav Tenk"]
    # The paper's own date, not the day Hugging Face featured it.
    assert lantern.published == date(2024, 1, 3)
    assert lantern.upvotes == 42
    # One link rule for every source: the arXiv abstract page; the Hugging Face page stays in links.
    assert lantern.url == "https://arxiv.org/abs/2401.01234"
    assert lantern.links == {
        "arxiv": "https://arxiv.org/abs/2401.01234",
        "huggingface": "https://huggingface.co/papers/2401.01234",
    }


def test_hf_top_level_upvotes_entities_and_markup() -> None:
    agents = listing(parse_hf_daily(fixture("hf_daily.json"))[1])
    assert agents.upvotes == 7
    assert agents.title == "Tiny Agents & Their Very Large Plans"
    assert agents.authors == ["Nadia Oyelaran"]


def test_hf_bad_items_are_rejected_alone() -> None:
    items = parse_hf_daily(fixture("hf_daily.json"))
    assert items[2] == Rejected(3, "item 3: 'paper.id' is not an arXiv id: 'not an arxiv id'")
    assert items[3] == Rejected(4, "item 4: expected an object, got a string")
    winter = listing(items[4])
    assert winter.arxiv_id == "2312.09999"
    # A boolean is not a vote count.
    assert winter.upvotes is None


def test_hf_entries_missing_paper_or_title() -> None:
    body = json.dumps(
        [
            {"title": "No paper object"},
            {"paper": ["not", "an", "object"]},
            {"paper": {"id": "2402.00040", "summary": "No title anywhere."}},
            {"paper": {"id": "2402.00041", "summary": "Title only at top level."}, "title": "Top Title"},
        ]
    ).encode()
    items = parse_hf_daily(body)
    assert items[:3] == [
        Rejected(1, "item 1: 'paper' is missing"),
        Rejected(2, "item 2: 'paper' is a list instead of an object"),
        Rejected(3, "item 3 (2402.00040): missing 'title'"),
    ]
    assert listing(items[3]).title == "Top Title"


def test_hf_error_object_is_a_format_error() -> None:
    with pytest.raises(
        FeedFormatError, match="expected a JSON list of papers, got an object with keys error, message"
    ):
        parse_hf_daily(b'{"error": "Too many requests", "message": "slow down"}')


def test_hf_empty_list_is_no_papers() -> None:
    assert parse_hf_daily(b"[]") == []


def test_truncated_json() -> None:
    body = fixture("hf_daily.json")
    with pytest.raises(FeedFormatError, match=r"malformed JSON at line \d+ column \d+: .*truncated"):
        parse_hf_daily(body[: len(body) // 2])


def test_deeply_nested_json() -> None:
    with pytest.raises(FeedFormatError, match="malformed JSON"):
        parse_hf_daily(b"[" * 100_000 + b"]" * 100_000)


def test_json_with_an_integer_too_long_to_convert() -> None:
    with pytest.raises(FeedFormatError, match="malformed JSON"):
        parse_hf_daily(b'[{"paper": {"upvotes": ' + b"9" * 10_000 + b"}}]")


def test_json_that_is_not_utf8() -> None:
    body = '[{"paper": {"id": "2402.00050", "title": "Caf\u00e9", "summary": "x"}}]'.encode("latin-1")
    offset = body.index(b"\xe9")
    with pytest.raises(FeedFormatError, match=f"not valid UTF-8 at byte {offset}$"):
        parse_hf_daily(body)


# --- Documents that are not what was asked for -------------------------------------------------------


@pytest.mark.parametrize(("name", "parser"), ALL_PARSERS)
def test_html_error_page_served_as_success(name: str, parser: Callable[[bytes], Any]) -> None:
    with pytest.raises(FeedFormatError, match=r"got an HTML page titled 'Rate exceeded'$"):
        parser(fixture("html_error_page.html"))


@pytest.mark.parametrize(("name", "parser"), ALL_PARSERS)
def test_empty_body(name: str, parser: Callable[[bytes], Any]) -> None:
    with pytest.raises(FeedFormatError, match="got an empty document"):
        parser(b"  \n")


@pytest.mark.parametrize(("name", "parser"), ALL_PARSERS[:2])
def test_plain_text_instead_of_xml(name: str, parser: Callable[[bytes], Any]) -> None:
    with pytest.raises(
        FeedFormatError, match=re.escape("got text starting 'Rate exceeded. Try again later.'")
    ):
        parser(b"Rate exceeded. Try again later.")


def test_json_given_to_the_xml_parser() -> None:
    with pytest.raises(FeedFormatError, match="expected an Atom feed, got a JSON document"):
        parse_arxiv_atom(fixture("hf_daily.json"))


def test_looks_like_html() -> None:
    assert looks_like_html(fixture("html_error_page.html")) == "Rate exceeded"
    xhtml = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
        b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>503 &amp; Co</title></head></html>'
    )
    assert looks_like_html(xhtml) == "503 & Co"
    assert looks_like_html(b"<html><body>Oops</body></html>") == "an HTML page"
    assert looks_like_html(b"Service unavailable", "text/html; charset=utf-8") == "an HTML page"
    assert looks_like_html(fixture("arxiv_rss.xml")) is None
    assert looks_like_html(fixture("arxiv_api_page.xml"), "text/html") is None
    assert looks_like_html(fixture("hf_daily.json"), "text/html") is None
    assert looks_like_html(b"[]") is None


def test_malformed_xml_names_the_line() -> None:
    body = fixture("arxiv_api_page.xml")
    broken_line = body[: body.index(b"</name>")].count(b"\n") + 1
    broken = body.replace(b"</name>", b"</nmae>", 1)
    with pytest.raises(FeedFormatError, match=f"malformed XML at line {broken_line}: mismatched tag"):
        parse_arxiv_atom(broken)


def test_truncated_xml() -> None:
    body = fixture("arxiv_rss.xml")
    with pytest.raises(FeedFormatError, match=r"malformed XML at line \d+: .*truncated"):
        parse_arxiv_rss(body[: body.index(b"<item>") + 40])


def test_xml_declared_utf8_that_is_not() -> None:
    body = fixture("arxiv_rss_latin1.xml").replace(b'encoding="ISO-8859-1"', b'encoding="UTF-8"')
    offset = body.index("É".encode("latin-1"))
    with pytest.raises(FeedFormatError, match=f"not valid UTF-8 at byte {offset}$"):
        parse_arxiv_rss(body)


def test_xml_with_unknown_encoding() -> None:
    with pytest.raises(FeedFormatError, match="unknown encoding 'x-martian'"):
        parse_arxiv_rss(b'<?xml version="1.0" encoding="x-martian"?><rss/>')


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_arxiv_rss(b"\xef\xbb\xbf" + fixture("arxiv_rss_empty.xml")) == []


def test_entity_expansion_bomb_fails_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(FeedFormatError, match="declares an entity"):
        parse_arxiv_atom(fixture("billion_laughs.xml"))
    assert time.perf_counter() - started < 1.0


def test_external_entity_is_never_loaded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-leak")
    body = (
        f'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY leak SYSTEM "{secret.as_uri()}">]>'
        '<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/2402.00060</id>'
        "<title>&leak;</title><summary>&leak;</summary></entry></feed>"
    ).encode()
    with pytest.raises(FeedFormatError) as raised:
        parse_arxiv_atom(body)
    assert "do-not-leak" not in str(raised.value)


def test_almost_tags_do_not_slow_down_text_cleaning() -> None:
    # An unclosed tag opening with thousands of attributes: every "<" could start a tag until the end.
    summary = ("&lt;a " + "b=c " * 400) * 25
    started = time.perf_counter()
    items = atom_items(api_feed(api_entry("2402.00070", "Fine", summary)))
    assert time.perf_counter() - started < 2.0
    assert listing(items[0]).abstract.startswith("<a b=c b=c")


@pytest.mark.parametrize(
    ("name", "parser"),
    [
        ("arxiv_api_page.xml", parse_arxiv_atom),
        ("arxiv_rss.xml", parse_arxiv_rss),
        ("arxiv_rss_atom.xml", parse_arxiv_rss),
        ("hf_daily.json", parse_hf_daily),
    ],
)
def test_damaged_documents_fail_cleanly(name: str, parser: Callable[[bytes], Any]) -> None:
    """Cut and corrupted copies of each fixture either parse or raise FeedFormatError, nothing else."""
    original = fixture(name)
    rng = random.Random(name)
    outcomes = {"parsed": 0, "refused": 0}
    for _ in range(300):
        damaged = bytearray(original)
        if rng.random() < 0.4:
            del damaged[rng.randrange(len(damaged)) :]
        for _ in range(rng.randrange(1, 4)):
            if damaged:
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            parser(bytes(damaged))
        except FeedFormatError:
            outcomes["refused"] += 1
        else:
            outcomes["parsed"] += 1
    # Both paths are exercised: most one-byte damage leaves a usable document, truncation never does.
    assert outcomes["parsed"] > 0 and outcomes["refused"] > 0
