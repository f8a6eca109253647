"""The labelled relevance set used to evaluate ranking: well-formed, and in step with the listing dumps."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from digest.ingest.formats import ParsedListing, SourceLine, normalize_title, parse_listing_text
from tests.support.env import ROOT, SHARED_LISTINGS

LABELS = ROOT / "tools" / "evaluation_labels.tsv"
MIN_RELEVANT_PER_TOPIC = 8

_KEY = re.compile(r"[0-9a-f]{16}")
_TOPIC_ID = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class LabelSet:
    topics: dict[str, str]
    labels: dict[str, frozenset[str]]


def _parse(text: str) -> LabelSet:
    topics: dict[str, str] = {}
    labels: dict[str, frozenset[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# topic "):
            topic, sep, keywords = line.removeprefix("# topic ").partition("\t")
            assert sep and _TOPIC_ID.fullmatch(topic), f"line {number}: bad topic declaration {line!r}"
            assert keywords.strip(), f"line {number}: topic {topic} has no keywords"
            assert topic not in topics, f"line {number}: topic {topic} declared twice"
            topics[topic] = keywords
            continue
        if line.startswith("# ") or line == "#":
            continue
        fields = line.split("\t")
        assert len(fields) == 2, f"line {number}: expected '<key><TAB><topics>', got {line!r}"
        key, topic_field = fields
        assert _KEY.fullmatch(key), f"line {number}: key {key!r} is not 16 lowercase hex characters"
        assert key not in labels, f"line {number}: key {key} appears twice"
        names = topic_field.split(",") if topic_field else []
        assert len(set(names)) == len(names), f"line {number}: a topic is repeated"
        labels[key] = frozenset(names)
    return LabelSet(topics, labels)


@cache
def _label_set() -> LabelSet:
    return _parse(LABELS.read_text(encoding="utf-8"))


def _listing_keys(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as fh:
        lines = (SourceLine(n, t.rstrip("\n")) for n, t in enumerate(fh, 1))
        return {
            hashlib.sha256(normalize_title(p.title).encode()).hexdigest()[:16]
            for p in parse_listing_text(lines)
            if isinstance(p, ParsedListing)
        }


def test_file_parses_with_declared_topics() -> None:
    label_set = _label_set()
    assert label_set.topics, "no '# topic <id><TAB><keywords>' lines"
    assert label_set.labels, "no labelled papers"


def test_every_label_is_a_declared_topic() -> None:
    label_set = _label_set()
    undeclared = {t for names in label_set.labels.values() for t in names} - set(label_set.topics)
    assert not undeclared, f"labels for undeclared topics: {sorted(undeclared)}"


def test_every_topic_has_enough_relevant_papers() -> None:
    label_set = _label_set()
    counts = {t: sum(t in names for names in label_set.labels.values()) for t in label_set.topics}
    thin = {t: n for t, n in counts.items() if n < MIN_RELEVANT_PER_TOPIC}
    assert not thin, f"topics with fewer than {MIN_RELEVANT_PER_TOPIC} relevant papers: {thin}"


def test_labels_cover_exactly_the_papers_in_the_listing_dumps() -> None:
    files = sorted(SHARED_LISTINGS.glob("*.txt"))
    if not files:
        pytest.fail(f"the shared listing dumps are missing from {SHARED_LISTINGS}")
    listed = set().union(*(_listing_keys(path) for path in files))
    labelled = set(_label_set().labels)
    unknown = labelled - listed
    missing = listed - labelled
    assert not unknown, f"{len(unknown)} labelled keys match no listed paper, e.g. {sorted(unknown)[:5]}"
    assert not missing, f"{len(missing)} listed papers have no label line, e.g. {sorted(missing)[:5]}"


def test_parser_rejects_malformed_lines() -> None:
    with pytest.raises(AssertionError):
        _parse("# topic a\tA\n0123456789abcdef\ta\n0123456789abcdef\t\n")  # duplicate key
    with pytest.raises(AssertionError):
        _parse("# topic a\tA\n0123456789ABCDEF\ta\n")  # not lowercase hex
    with pytest.raises(AssertionError):
        _parse("# topic a\tA\n0123456789abcdef\n")  # no tab
    parsed = _parse("# about\n# topic a\tA\n0123456789abcdef\t\nfedcba9876543210\ta\n")
    assert parsed.topics == {"a": "A"}
    assert parsed.labels == {"0123456789abcdef": frozenset(), "fedcba9876543210": frozenset({"a"})}
