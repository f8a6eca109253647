"""A misconfigured source fails at once, in the source's own words: arXiv's error feed (HTTP 200) and an
API refusal whose Atom body explains it (HTTP 400). Bodies written here in the shapes arXiv sends."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from digest.cli import main
from digest.db import transaction
from digest.ingest.files import IngestFileError, ingest_paths
from digest.ingest.parsers.arxiv_rss import parse_arxiv_rss
from digest.ingest.parsers.common import FeedFormatError
from digest.ingest.parsers.hf_daily import parse_hf_daily
from digest.ingest.sources import add_source, fetch_source
from digest.models import Fetch, Listing
from digest.services import Services
from tests.support.replay_server import FIXTURES, ReplayServer, Reply, replay_server_fixture  # noqa: F401

ERROR_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Feed error for query: astroph</title>
<link>http://rss.arxiv.org/rss/astroph</link>
<description>Bad archive 'astroph'. Valid archive names are: astro-ph, cond-mat, cs, math.</description>
</channel></rss>"""

API_ERROR = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title>ArXiv Query: search_query=&amp;id_list=abc</title>
<entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_abc</id><title>Error</title>
<summary>incorrect id format for abc</summary></entry>
</feed>"""


def test_arxivs_error_feed_fails_the_source_with_arxivs_explanation(
    services: Services, replay_server: ReplayServer
) -> None:
    replay_server.script("/rss", Reply(200, {"Content-Type": "application/rss+xml"}, ERROR_FEED))
    with transaction(services.sessions) as session:
        source = add_source(
            session,
            "astro",
            "arxiv_rss",
            url=replay_server.url("/rss") + "?cat={category}",
            categories=["astroph"],
        )
    outcome = fetch_source(services, source.id)
    assert outcome.error is not None
    assert "error feed" in outcome.error and "Bad archive 'astroph'. Valid archive names are" in outcome.error
    runner = CliRunner()
    env = {
        "DIGEST_DATA_DIR": str(services.settings.data_dir),
        "DIGEST_SECRET_KEY": services.settings.secret_key,
    }
    result = runner.invoke(main, ["sources", "status"], env=env)
    assert result.exit_code == 1 and "FAILING" in result.output and "Bad archive 'astroph'" in result.output


def test_an_api_refusal_keeps_arxivs_explanation_from_its_body(
    services: Services, replay_server: ReplayServer
) -> None:
    replay_server.script("/api", Reply(400, {"Content-Type": "application/atom+xml"}, API_ERROR))
    with transaction(services.sessions) as session:
        source = add_source(session, "ids", "arxiv_api", url=replay_server.url("/api"), query="id:abc")
    outcome = fetch_source(services, source.id)
    assert outcome.http_status == 400
    assert outcome.error is not None and "incorrect id format for abc" in outcome.error


def test_one_bad_category_is_named_with_its_url_and_the_good_ones_papers_are_kept(
    services: Services, replay_server: ReplayServer
) -> None:
    good = (FIXTURES / "feeds" / "arxiv_rss.xml").read_bytes()
    replay_server.script("/rss/cs.CL", Reply(200, {"Content-Type": "application/rss+xml"}, good))
    replay_server.script("/rss/astroph", Reply(200, {"Content-Type": "application/rss+xml"}, ERROR_FEED))
    with transaction(services.sessions) as session:
        source = add_source(
            session,
            "two",
            "arxiv_rss",
            url=replay_server.url("/rss/") + "{category}",
            categories=["cs.CL", "astroph"],
        )
    outcome = fetch_source(services, source.id)
    assert outcome.counts.new >= 1, "the good category's papers are stored"
    assert outcome.error is not None and "category astroph" in outcome.error
    assert replay_server.url("/rss/astroph") in outcome.error and "Bad archive 'astroph'" in outcome.error
    assert "category cs.CL" not in outcome.error
    assert "but failed: category astroph" in outcome.summary()
    with services.sessions() as session:
        (fetch,) = session.scalars(select(Fetch)).all()
    assert fetch.error == outcome.error and fetch.http_status == 200 and fetch.new == outcome.counts.new


def test_a_200_that_is_not_the_expected_document_records_its_status_and_says_what_arrived(
    services: Services, replay_server: ReplayServer
) -> None:
    replay_server.script("/hf", Reply(200, {"Content-Type": "application/xml"}, ERROR_FEED))
    with transaction(services.sessions) as session:
        source = add_source(session, "hf", "hf_daily", url=replay_server.url("/hf"))
    outcome = fetch_source(services, source.id)
    assert outcome.http_status == 200
    assert (
        outcome.error is not None
        and "(HTTP 200)" in outcome.error
        and replay_server.url("/hf") in outcome.error
    )


API_PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"
      xmlns:arxiv="http://arxiv.org/schemas/atom">
<title>ArXiv Query: search_query=cat:cs.LG</title>
<opensearch:totalResults>1</opensearch:totalResults>
<entry><id>http://arxiv.org/abs/2502.00007v1</id><title>A paper</title><summary>An abstract.</summary>
<arxiv:doi>10.1000/xyz</arxiv:doi></entry>
</feed>"""


def test_wrong_content_is_named_for_what_it_is() -> None:
    with pytest.raises(
        FeedFormatError, match=r"got an arXiv API response .* add it as a source of kind arxiv_api"
    ):
        parse_arxiv_rss(API_PAGE)
    with pytest.raises(FeedFormatError, match=r"got XML \(<rss>\) instead of JSON"):
        parse_hf_daily(ERROR_FEED)


@pytest.mark.parametrize("body", [ERROR_FEED, API_PAGE, b"\n\n<rdf:RDF>\n<item><description>x</description>"])
def test_a_feed_saved_as_a_text_file_is_refused_naming_the_file(
    services: Services, tmp_path: Path, body: bytes
) -> None:
    path = tmp_path / "saved-feed.txt"
    path.write_bytes(body)
    with pytest.raises(IngestFileError, match=r"saved-feed\.txt.*holds an XML feed or API page"):
        ingest_paths(services.sessions, [path])
    with services.sessions() as session:
        assert session.scalars(select(Listing)).all() == []
