"""Text that real arXiv and Hugging Face responses carry, in structures written here to match them: bracketed
tokens, affiliations with commas inside parentheses, namesakes, and one link rule across sources."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select

from digest.ingest.formats import ParsedListing
from digest.ingest.parsers.arxiv_api import parse_arxiv_atom
from digest.ingest.parsers.arxiv_rss import parse_arxiv_rss, split_authors
from digest.ingest.parsers.hf_daily import parse_hf_daily
from digest.models import Listing
from digest.services import Services
from tests.unit.ingest.test_store import store

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def rss(title: str, creator: str, abstract: str, arxiv_id: str = "2502.00001v1") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom">
<channel><title>cs.CL updates on arXiv.org</title>
<item>
  <title>{title}</title>
  <link>https://arxiv.org/abs/{arxiv_id.split("v")[0]}</link>
  <description>arXiv:{arxiv_id} Announce Type: new
Abstract: {abstract}</description>
  <guid isPermaLink="false">oai:arXiv.org:{arxiv_id.split("v")[0]}</guid>
  <category>cs.CL</category>
  <pubDate>Mon, 03 Feb 2025 00:00:00 -0500</pubDate>
  <arxiv:announce_type>new</arxiv:announce_type>
  <dc:creator>{creator}</dc:creator>
</item>
</channel></rss>""".encode()


def api(title: str, abstract: str, authors: list[str]) -> bytes:
    names = "".join(f"<author><name>{name}</name></author>" for name in authors)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
<entry><id>http://arxiv.org/abs/2502.00002v2</id><published>2025-02-03T10:00:00Z</published>
<title>{title}</title><summary>{abstract}</summary>{names}
<arxiv:primary_category term="cs.LG"/></entry></feed>""".encode()


def only(results: list[object]) -> ParsedListing:
    (result,) = results
    assert isinstance(result, ParsedListing), result
    return result


def test_bracketed_tokens_survive_every_source_while_real_markup_goes() -> None:
    from_rss = only(
        parse_arxiv_rss(
            rss(
                "Let&#39;s &lt;think&gt; about LLM Reasoning",
                "Ann Lee",
                "Models emit &lt;think&gt; ... &lt;/think&gt; then &lt;answer&gt;; a &lt;short&gt; mode "
                "skips it. &lt;p&gt;Code&lt;/p&gt; &lt;i&gt;here&lt;/i&gt;.",
            )
        )
    )
    assert from_rss.title == "Let's <think> about LLM Reasoning"
    assert "emit <think> ... </think> then <answer>; a <short> mode skips it." in from_rss.abstract
    assert from_rss.abstract.endswith("Code here.")
    from_api = only(
        parse_arxiv_atom(
            api("Training &lt;pad&gt;-free Decoders", "We drop &lt;s&gt; and &lt;unk&gt; tokens.", ["Bo Li"])
        ).items
    )
    assert from_api.title == "Training <pad>-free Decoders"
    assert from_api.abstract == "We drop <s> and <unk> tokens."
    day = [
        {
            "paper": {
                "id": "2502.00003",
                "title": "When to <think> and when to answer",
                "summary": "A <short> budget.",
                "authors": [{"name": "Cy Wu"}],
            }
        }
    ]
    from_hf = only(parse_hf_daily(json.dumps(day).encode()))
    assert (from_hf.title, from_hf.abstract) == ("When to <think> and when to answer", "A <short> budget.")


def test_affiliations_in_parentheses_are_not_authors() -> None:
    creator = (
        "Ann Lee (University of X, School of Y, Some City, Country), Bo Li (Lab Z, Another City), "
        "Cy Wu, Dee Roe (Inst. Q [Dept. R, S]) and Eve Moe"
    )
    parsed = only(parse_arxiv_rss(rss("A title", creator, "An abstract.")))
    assert parsed.authors == ["Ann Lee", "Bo Li", "Cy Wu", "Dee Roe", "Eve Moe"]
    assert split_authors("Ann Lee, and Bo Li") == ["Ann Lee", "Bo Li"]
    assert split_authors("Sandra Anderson (Anderson and Sons Lab)") == ["Sandra Anderson"]


def test_two_authors_with_one_name_are_both_kept() -> None:
    names = ["Lei Zhang", "Zihan Chen", "Lei Zhang", "Mei Lin", "Ravi Rao"]
    from_api = only(parse_arxiv_atom(api("A title", "An abstract.", names)).items)
    assert from_api.authors == names
    from_rss = only(parse_arxiv_rss(rss("A title", ", ".join(names), "An abstract.")))
    assert from_rss.authors == names
    day = [
        {"paper": {"id": "2502.00004", "title": "T", "summary": "S", "authors": [{"name": n} for n in names]}}
    ]
    assert only(parse_hf_daily(json.dumps(day).encode())).authors == names


def test_a_merged_paper_links_to_arxiv_whichever_source_came_first(services: Services) -> None:
    hf = ParsedListing(
        line=1,
        title="Sparse Mixtures at Scale",
        abstract="We route tokens.",
        external_id="2502.00005",
        arxiv_id="2502.00005",
        url="https://huggingface.co/papers/2502.00005",
        links={"huggingface": "https://huggingface.co/papers/2502.00005"},
    )
    store(services, "hf_daily", hf, at=T0)
    rss_copy = ParsedListing(
        line=1,
        title="Sparse Mixtures at Scale",
        abstract="We route tokens.",
        external_id="2502.00005",
        arxiv_id="2502.00005",
        url="https://arxiv.org/abs/2502.00005",
        links={"arxiv": "https://arxiv.org/abs/2502.00005"},
    )
    store(services, "arxiv_rss", rss_copy, at=T0)
    with services.sessions() as session:
        (row,) = session.scalars(select(Listing)).all()
    assert row.url == "https://arxiv.org/abs/2502.00005"
    assert row.links["huggingface"] == "https://huggingface.co/papers/2502.00005"


def test_a_new_version_brings_its_own_author_list(services: Services) -> None:
    first = ParsedListing(
        line=1,
        title="Old Title",
        abstract="v1.",
        arxiv_id="2502.00006",
        version=1,
        authors=["Ann Lee", "Bo Li"],
    )
    store(services, "arxiv_api", first, at=T0)
    second = ParsedListing(
        line=1,
        title="New Title",
        abstract="v2.",
        arxiv_id="2502.00006",
        version=2,
        authors=["Ann Lee", "Bo Li", "Cy Wu"],
    )
    store(services, "arxiv_rss", second, at=T0)
    with services.sessions() as session:
        (row,) = session.scalars(select(Listing)).all()
    assert (row.title, row.authors) == ("New Title", ["Ann Lee", "Bo Li", "Cy Wu"])
