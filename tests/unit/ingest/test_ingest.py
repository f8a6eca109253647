"""The ingest stage against a real SQLite database and real files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from digest.db import transaction
from digest.ingest.files import IngestFileError, IngestReport, RecordError, ingest_paths, normalize_title
from digest.ingest.formats import ParsedListing, Rejected, SourceLine, parse_listing_text, strip_glued_header
from digest.models import Listing
from digest.services import Services
from tests.support.env import FIXTURES

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def stored(services: Services) -> list[Listing]:
    with transaction(services.sessions) as session:
        return list(session.scalars(select(Listing).order_by(Listing.id)))


def stored_count(services: Services) -> int:
    with transaction(services.sessions) as session:
        return session.scalar(select(func.count()).select_from(Listing)) or 0


def abstract_for(topic: str) -> str:
    return (
        f"We study {topic} from first principles and report what we found. "
        "Our experiments cover several settings and the results hold across all of them, "
        "which suggests the effect is general rather than an artefact of one benchmark."
    )


def write_jsonl(path: Path, records: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def expected_papers_in_dump(path: Path) -> int:
    """Counted from the dump's known shape: two header lines, then strict title/abstract alternation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("Get trending papers") and lines[1].startswith("Get trending papers")
    body = lines[2:]
    assert len(body) % 2 == 0
    assert all(len(abstract) > len(title) for title, abstract in zip(body[::2], body[1::2], strict=True))
    return len(body) // 2


# --- The shared listing dumps -------------------------------------------------------------------------


def test_shared_dumps_yield_every_paper_with_clean_titles(
    services: Services, shared_listings: list[Path]
) -> None:
    expected = sum(expected_papers_in_dump(path) for path in shared_listings)
    assert 800 <= expected <= 850

    report = ingest_paths(services.sessions, shared_listings, now=NOW)

    assert report.errors == []
    assert report.rejected == 0
    assert report.new + report.duplicate == expected
    assert report.files == [str(path) for path in shared_listings]
    listings = stored(services)
    assert len(listings) == report.new
    assert not [x.title for x in listings if x.title.startswith("Subscribe")]
    assert all(x.first_seen_at == NOW for x in listings)
    assert {x.source for x in listings} == {path.name for path in shared_listings}

    for path in shared_listings:
        lines = path.read_text(encoding="utf-8").splitlines()
        title_lines = set(lines[2::2])
        from_file = [x for x in listings if x.source == path.name]
        # The first title had the page's "Subscribe" button glued to it.
        assert lines[2].startswith("Subscribe")
        assert from_file[0].title == lines[2].removeprefix("Subscribe")
        assert all(x.title in title_lines for x in from_file[1:])
        assert all(len(x.title) < 300 and len(x.abstract) > 300 for x in from_file)
        assert all("  " not in x.title_key and x.title_key == normalize_title(x.title) for x in from_file)


def test_second_ingest_of_a_shared_dump_stores_nothing_new(
    services: Services, shared_listings: list[Path]
) -> None:
    dump = shared_listings[1]
    first = ingest_paths(services.sessions, [dump], now=NOW)
    assert first.new > 200

    second = ingest_paths(services.sessions, [dump], now=datetime(2025, 3, 5, tzinfo=UTC))

    assert second.new == 0
    assert second.duplicate == first.new + first.duplicate
    assert stored_count(services) == first.new
    assert all(x.first_seen_at == NOW for x in stored(services))


def test_progress_adds_up_to_the_total_size(services: Services, shared_listings: list[Path]) -> None:
    calls: list[int] = []

    ingest_paths(services.sessions, shared_listings, progress=calls.append)

    assert all(n > 0 for n in calls)
    assert sum(calls) == sum(path.stat().st_size for path in shared_listings)
    assert len(calls) >= len(shared_listings)


# --- Text dump variants -------------------------------------------------------------------------------


def test_blank_separated_dump_with_glued_sign_up(services: Services) -> None:
    path = FIXTURES / "ingest_blank_separated.txt"

    report = ingest_paths(services.sessions, [path], now=NOW)

    assert report.errors == []
    assert report.new == 3
    titles = [x.title for x in stored(services)]
    assert titles == [
        "Lattice Sketches for Streaming Quantile Estimation",
        'Teaching Small Models to Say "I Don\'t Know"',
        "Graph Rewiring Without Oversquashing: A Spectral View",
    ]
    assert all(x.abstract.endswith(".") and x.source == path.name for x in stored(services))


def test_wrapped_abstract_is_joined_and_a_title_without_abstract_is_reported(services: Services) -> None:
    path = FIXTURES / "ingest_wrapped_and_broken.txt"

    report = ingest_paths(services.sessions, [path], now=NOW)

    assert report.new == 2
    assert report.rejected == 1
    [error] = report.errors
    assert (error.path, error.line) == (str(path), 6)
    assert "no abstract" in error.message and "A Title Whose Abstract Went Missing" in error.message
    assert str(error).startswith(f"{path}:6: ")
    first, second = stored(services)
    assert first.title == "Diffusion Priors for Sparse-View Tomography"
    assert "denoising steps with data-consistency projections" in first.abstract
    assert first.abstract.endswith("rated its reconstructions diagnostically acceptable.")
    assert second.title == "Reproducible Benchmarks for Federated Optimisation"


def test_abstract_line_with_no_title_is_reported() -> None:
    long_prose = abstract_for("orphaned paragraphs") * 2
    lines = [
        SourceLine(1, "A Proper Title"),
        SourceLine(2, long_prose),
        SourceLine(3, ""),
        SourceLine(4, long_prose),
        SourceLine(5, "Another Proper Title"),
        SourceLine(6, long_prose),
    ]

    results = list(parse_listing_text(lines))

    assert [type(r).__name__ for r in results] == ["Rejected", "ParsedListing", "ParsedListing"]
    assert isinstance(results[0], Rejected)
    assert results[0].line == 4 and "without a title" in results[0].message


def test_glued_header_is_stripped_only_when_visibly_glued() -> None:
    assert strip_glued_header("SubscribeUnsupervised Corpus Aware Pre-training") == (
        "Unsupervised Corpus Aware Pre-training"
    )
    assert strip_glued_header("Log inVariational Bounds") == "Variational Bounds"
    assert strip_glued_header("Subscriber Churn Prediction") == "Subscriber Churn Prediction"
    assert strip_glued_header("Register Allocation for GPUs") == "Register Allocation for GPUs"
    assert strip_glued_header("Subscribe") == "Subscribe"


def test_glued_header_is_not_stripped_from_later_titles() -> None:
    prose = abstract_for("naming things")
    lines = [SourceLine(1, "SubscribeFirst Paper"), SourceLine(2, prose)]
    lines += [SourceLine(3, "SubscribeNet: Routing Newsletters at Scale"), SourceLine(4, prose)]

    titles = [r.title for r in parse_listing_text(lines) if isinstance(r, ParsedListing)]

    assert titles == ["First Paper", "SubscribeNet: Routing Newsletters at Scale"]


# --- JSON Lines ---------------------------------------------------------------------------------------


def test_jsonl_good_lines_are_stored_and_each_bad_line_is_explained(
    services: Services, tmp_path: Path
) -> None:
    path = tmp_path / "listings.jsonl"
    good = {
        "id": "  2501.00001 ",
        "title": "Sparse   Mixtures\tof Experts",
        "abstract": abstract_for("sparse mixtures"),
        "url": "https://example.org/papers/1",
        "authors": "Ada Lovelace,  Alan Turing ,",
        "published": "2025-01-02T23:30:00-05:00",
        "venue": "ignored",
    }
    lines = [
        json.dumps(good),  # 1
        "",  # 2: blank lines are skipped, not errors
        '{"title": "Broken", "abstract": ',  # 3
        json.dumps(["not", "an", "object"]),  # 4
        json.dumps({"title": "No abstract"}),  # 5
        json.dumps({"title": "   ", "abstract": abstract_for("nothing")}),  # 6
        json.dumps({"title": 42, "abstract": abstract_for("numbers")}),  # 7
        json.dumps({"title": "Bad url", "abstract": abstract_for("urls"), "url": "javascript:alert(1)"}),
        json.dumps({"title": "Bad date", "abstract": abstract_for("dates"), "published": "2025-13-40"}),
        json.dumps({"title": "Bad authors", "abstract": abstract_for("people"), "authors": ["A", 3]}),
        json.dumps({"title": "T" * 1001, "abstract": abstract_for("length")}),  # 11
        json.dumps({"title": "Huge abstract", "abstract": "word " * 10_001}),  # 12
        json.dumps({"title": "Bad id", "abstract": abstract_for("ids"), "id": 7}),  # 13
        json.dumps({"title": "!!!", "abstract": abstract_for("punctuation")}),  # 14
        json.dumps({"title": "Second Good Paper", "abstract": abstract_for("the end"), "authors": ["B. C."]}),
    ]
    path.write_text("\n".join(lines), encoding="utf-8")

    report = ingest_paths(services.sessions, [path], now=NOW)

    problems = {e.line: e.message for e in report.errors}
    assert sorted(problems) == list(range(3, 15))
    assert "invalid JSON" in problems[3]
    assert "expected a JSON object, got an array" in problems[4]
    assert problems[5] == "missing 'abstract'"
    assert problems[6] == "empty 'title'"
    assert problems[7] == "'title' must be a string, not a number"
    assert "'url' must be an http or https URL" in problems[8]
    assert "'published' is not an ISO date" in problems[9] and "2025-13-40" in problems[9]
    assert "'authors' must hold strings" in problems[10]
    assert "'title' longer than 1000 characters" in problems[11]
    assert "'abstract' longer than 50000 characters" in problems[12]
    assert problems[13] == "'id' must be a string, not a number"
    assert "no letters or digits" in problems[14]
    assert all(str(e) == f"{path}:{e.line}: {e.message}" for e in report.errors)
    assert (report.new, report.duplicate, report.rejected) == (2, 0, 12)

    first, second = stored(services)
    assert (first.arxiv_id, first.external_id) == ("2501.00001", None), "a bare arXiv id is recognised as one"
    assert first.title == "Sparse Mixtures of Experts"
    assert first.title_key == "sparse mixtures of experts"
    assert first.url == "https://example.org/papers/1"
    assert first.authors == ["Ada Lovelace", "Alan Turing"]
    assert first.published == date(2025, 1, 2)
    assert (second.external_id, second.authors, second.url, second.published) == (None, ["B. C."], None, None)


def test_jsonl_is_recognised_by_content_and_a_bom_is_ignored(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "export.dat"
    record = {"title": "Byte Order Marks Considered Harmless", "abstract": abstract_for("encodings")}
    path.write_bytes(b"\xef\xbb\xbf\n" + json.dumps(record).encode() + b"\r\n")

    report = ingest_paths(services.sessions, [path], now=NOW)

    assert (report.new, report.rejected) == (1, 0)
    assert stored(services)[0].title == "Byte Order Marks Considered Harmless"


def test_text_is_cleaned_but_html_is_kept_literally(services: Services, tmp_path: Path) -> None:
    title = '<b>Bold</b> Claims & <script>alert("x")</script> Safety'
    path = write_jsonl(
        tmp_path / "html.jsonl",
        [{"title": title, "abstract": "Line one\x00\x07 and\u200b\n\n  line <i>two</i>.  " * 5}],
    )

    ingest_paths(services.sessions, [path], now=NOW)

    [listing] = stored(services)
    assert listing.title == title
    assert "\x00" not in listing.abstract and "\u200b" not in listing.abstract
    assert listing.abstract.startswith("Line one and line <i>two</i>. Line one")
    assert listing.title_key == "b bold b claims script alert x script safety"


def test_empty_file_is_ingested_as_no_papers(services: Services, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n", encoding="utf-8")

    report = ingest_paths(services.sessions, [empty, blank], now=NOW)

    assert report == IngestReport(files=[str(empty), str(blank)])
    assert stored_count(services) == 0


# --- Deduplication ------------------------------------------------------------------------------------


def test_same_id_within_one_file_is_stored_once(services: Services, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "ids.jsonl",
        [
            {"id": "2401.1", "title": "Original Title", "abstract": abstract_for("versions")},
            {"id": " 2401.1", "title": "Revised Title v2", "abstract": abstract_for("revisions")},
        ],
    )

    report = ingest_paths(services.sessions, [path], now=NOW)

    assert (report.new, report.duplicate) == (1, 1)
    assert [x.title for x in stored(services)] == ["Original Title"]


def test_same_title_with_different_case_and_punctuation_is_a_duplicate(
    services: Services, tmp_path: Path
) -> None:
    first = write_jsonl(
        tmp_path / "a.jsonl",
        [{"id": "a1", "title": "Attention Is All You Need!", "abstract": abstract_for("x")}],
    )
    second = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"id": "b7", "title": "attention is all you need", "abstract": abstract_for("y")},
            {"title": "ATTENTION  is all: you need", "abstract": abstract_for("z")},
            {"id": "a1", "title": "Something Else Entirely", "abstract": abstract_for("w")},
        ],
    )

    report = ingest_paths(services.sessions, [first, second], now=NOW)

    assert (report.new, report.duplicate) == (1, 3)
    [listing] = stored(services)
    assert (listing.external_id, listing.source) == ("a1", "a.jsonl")
    assert normalize_title("Attention Is All You Need!") == "attention is all you need"


def test_dedup_spans_lookup_chunks_and_runs(services: Services, tmp_path: Path) -> None:
    records = [
        {"id": f"id-{n}", "title": f"Paper Number {n}", "abstract": abstract_for(str(n))} for n in range(1200)
    ]
    # Repeats placed far apart, so they land in different lookup chunks of the same transaction.
    records += [{"title": "paper number 3", "abstract": abstract_for("again")}, {**records[10], "title": "X"}]
    path = write_jsonl(tmp_path / "many.jsonl", records)

    first = ingest_paths(services.sessions, [path], now=NOW)
    second = ingest_paths(services.sessions, [path], now=NOW)

    assert (first.new, first.duplicate) == (1200, 2)
    assert (second.new, second.duplicate) == (0, 1202)
    assert stored_count(services) == 1200


def test_normalize_title_folds_unicode_case_and_punctuation() -> None:
    assert normalize_title("  Ｄｅｅｐ  Learning—For ÉCOLE's  Straße ") == "deep learning for école s strasse"
    assert normalize_title("GPT-4 & Friends (2024)") == "gpt 4 friends 2024"
    assert len(normalize_title("word " * 400)) <= 500


# --- File errors --------------------------------------------------------------------------------------


def test_missing_file_stops_the_run_before_anything_is_written(services: Services, tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [{"title": "Fine Paper", "abstract": abstract_for("fine")}])
    missing = tmp_path / "nope.jsonl"

    with pytest.raises(IngestFileError) as caught:
        ingest_paths(services.sessions, [good, missing], now=NOW)

    assert str(missing) in str(caught.value) and "no such file" in str(caught.value)
    assert stored_count(services) == 0


def test_directory_and_fifo_are_refused(services: Services, tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [{"title": "Fine Paper", "abstract": abstract_for("fine")}])
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)

    with pytest.raises(IngestFileError, match="is a directory"):
        ingest_paths(services.sessions, [good, tmp_path], now=NOW)
    with pytest.raises(IngestFileError, match="not a regular file"):
        ingest_paths(services.sessions, [good, fifo], now=NOW)
    assert stored_count(services) == 0


def test_unreadable_file_is_refused(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [{"title": "Fine Paper", "abstract": abstract_for("fine")}])
    secret = write_jsonl(tmp_path / "secret.jsonl", [{"title": "Hidden", "abstract": abstract_for("x")}])
    secret.chmod(0)
    if os.access(secret, os.R_OK):
        # Root reads anything, so make the open fail the way it does for everyone else.
        real_open = Path.open

        def refuse_secret(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self == secret:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse_secret)

    with pytest.raises(IngestFileError, match="permission denied") as caught:
        ingest_paths(services.sessions, [good, secret], now=NOW)
    assert str(secret) in str(caught.value)
    assert stored_count(services) == 0


def test_invalid_utf8_part_way_rolls_back_that_file_only(services: Services, tmp_path: Path) -> None:
    earlier = write_jsonl(
        tmp_path / "earlier.jsonl", [{"title": "Kept Paper", "abstract": abstract_for("k")}]
    )
    broken = tmp_path / "broken.jsonl"
    good_lines = [
        json.dumps({"title": f"Doomed Paper {n}", "abstract": abstract_for(str(n))}).encode()
        for n in range(1200)
    ]
    # Line 1100: well past the first lookup chunks, which have already been inserted by then.
    good_lines[1099] = b'{"title": "Latin-1 caf\xe9", "abstract": "x"}'
    broken.write_bytes(b"\n".join(good_lines) + b"\n")
    later = write_jsonl(tmp_path / "later.jsonl", [{"title": "Never Read", "abstract": abstract_for("n")}])

    with pytest.raises(IngestFileError) as caught:
        ingest_paths(services.sessions, [earlier, broken, later], now=NOW)

    assert str(broken) in str(caught.value)
    assert "not valid UTF-8 at line 1100" in str(caught.value)
    assert caught.value.report.files == [str(earlier)]
    assert caught.value.report.new == 1
    assert [x.title for x in stored(services)] == ["Kept Paper"]


def test_naive_now_is_refused(services: Services) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ingest_paths(services.sessions, [], now=datetime(2025, 1, 1))


def test_record_error_reads_like_a_compiler_message() -> None:
    assert (
        str(RecordError("listings.jsonl", 12, "missing 'abstract'"))
        == "listings.jsonl:12: missing 'abstract'"
    )


def test_a_line_too_long_to_hold_is_rejected_and_reading_goes_on(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "giant.jsonl"
    before = json.dumps({"title": "Before the Giant", "abstract": abstract_for("before")})
    giant = json.dumps({"title": "Giant", "abstract": "x" * (5 * 1024 * 1024)})
    after = json.dumps({"title": "After the Giant", "abstract": abstract_for("after")})
    path.write_text(f"{before}\n{giant}\n{after}\n", encoding="utf-8")
    calls: list[int] = []

    report = ingest_paths(services.sessions, [path], now=NOW, progress=calls.append)

    assert [(e.line, e.message) for e in report.errors] == [(2, "line too long to be a listing")]
    assert [x.title for x in stored(services)] == ["Before the Giant", "After the Giant"]
    assert sum(calls) == path.stat().st_size
