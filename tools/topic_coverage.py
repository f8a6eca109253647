"""Are all of a reader's topics heard? The share of typed topics with a good paper that get a place.

The production `Ranker` ranks the shared listings for readers with several topics: the judged personas'
keywords, and each persona's topics with the next persona's first one added (three unrelated-ish topics,
the case where one topic can be crowded out). Two windows: each of the evaluation's daily batches on its
own, and every paper at once (a first digest over a long look-back). Each is ranked twice in one run,
without and with each topic's place (`Ranker(balance_topics=...)`), and scored by the same rule the
ranker uses (`digest.rank.choose.TOPIC_SHARE` and the topic floors): a topic *has a good paper* when a
paper the reader may get matches it alone at least as well as that bar, and *is heard* when one of the
digest's picks does. The bar is set from the digest without the guarantee, so both rows share it.

    python -m tools.topic_coverage [--reader "LoRA, diffusion, speech"]...
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from digest.config import get_settings
from digest.db import upgrade
from digest.demo import DEFAULT_LISTINGS
from digest.ingest.files import ingest_paths
from digest.rank.choose import TOPIC_SHARE
from digest.rank.ranker import Candidate, Ranker, Ranking
from digest.services import Services
from digest.subscribers.subscriptions import parse_topics
from tools.evaluation import DEFAULT_DAYS, DEFAULT_RELEVANCE, DEFAULT_SEED, SHOWN, Paper, batches, read_papers

START = datetime(2026, 1, 5, 5, 0, tzinfo=UTC)


@dataclass
class Tally:
    with_good: int = 0
    heard_before: int = 0
    heard_after: int = 0
    quiet: int = 0
    moved: int = 0  # readers whose picks changed

    def add(self, other: Tally) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def row(self, label: str) -> str:
        def share(heard: int) -> str:
            return f"{heard / self.with_good:.3f} ({heard}/{self.with_good})" if self.with_good else "n/a"

        return (
            f"{label:<26} before {share(self.heard_before):<16} after {share(self.heard_after):<16} "
            f"quiet topics {self.quiet:<4} digests changed {self.moved}"
        )


def readers_of(personas: Path, extra: Sequence[str]) -> list[list[str]]:
    keywords = [parse_topics(p["keywords"]) for p in json.loads(personas.read_text(encoding="utf-8"))]
    mixed = [[*own, keywords[(n + 1) % len(keywords)][0]] for n, own in enumerate(keywords)]
    return [topics for topics in [*keywords, *mixed, *(parse_topics(r) for r in extra)] if len(topics) >= 2]


def ingest(services: Services, papers: Sequence[Paper], now: datetime, name: str, root: Path) -> None:
    path = root / f"{name}.jsonl"
    path.write_text(
        "".join(json.dumps({"title": p.title, "abstract": p.abstract}) + "\n" for p in papers),
        encoding="utf-8",
    )
    ingest_paths(services.sessions, [path], now=now)


def tally(services: Services, since: datetime, now: datetime, readers: list[list[str]]) -> Tally:
    block = [
        Candidate(digest_id=n + 1, subscriber_id=n + 1, topics=topics, size=SHOWN, since=since)
        for n, topics in enumerate(readers)
    ]
    with services.sessions() as session:
        ranked: dict[bool, Ranking] = {}
        for balance in (False, True):
            ranker = Ranker(services, session, since, now, balance_topics=balance)
            ranked[balance] = ranker.rank(session, block)
    profiles = ranker.keyword_profiles
    columns = profiles.topic_columns([profiles.distinct(topics) for topics in readers])
    on_topic, floors = profiles.topic_scores(ranker.docs), profiles.topic_floors()
    overall = profiles.scores(ranker.docs, readers)
    out = Tally(quiet=sum(len(q) for q in ranked[True].quiet.values()))
    for column, candidate in enumerate(block):
        before = ranked[False].get(candidate.subscriber_id, [])
        after = ranked[True].get(candidate.subscriber_id, [])
        out.moved += before != after
        picks_before = [p for p in before if p[3] == "picks"]
        if not picks_before:
            continue
        last_place = min(score for _, score, _, _ in picks_before)
        positions = {
            kind: [ranker.position_of[p[0]] for p in picks if p[3] == "picks"]
            for kind, picks in (("before", before), ("after", after))
        }
        may_get = overall[:, column] > 0
        for topic in columns[column][columns[column] >= 0]:
            bar = max(TOPIC_SHARE * last_place, float(floors[topic]))
            best = float(on_topic[may_get, topic].max(initial=0.0))
            if best <= 0 or best < bar:
                continue
            out.with_good += 1
            out.heard_before += bool(np.any(on_topic[positions["before"], topic] >= bar))
            out.heard_after += bool(np.any(on_topic[positions["after"], topic] >= bar))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--relevance", type=Path, default=DEFAULT_RELEVANCE)
    parser.add_argument("--listings", type=Path, default=DEFAULT_LISTINGS)
    parser.add_argument("--reader", action="append", default=[], help="another reader's topics, as typed")
    args = parser.parse_args()
    readers = readers_of(args.relevance / "personas.json", args.reader)
    papers = sorted({p.key: p for p in read_papers(args.listings)}.values(), key=lambda p: p.key)
    ordered = [papers[i] for i in np.random.default_rng(DEFAULT_SEED).permutation(len(papers))]
    print(f"{len(readers)} readers with two or more topics, {len(ordered)} papers")
    with tempfile.TemporaryDirectory(prefix="digest-topic-coverage-") as tmp:
        root = Path(tmp)
        for window in ("daily", "all at once"):
            settings = get_settings(
                {"DIGEST_DATA_DIR": str(root / window.replace(" ", "-")), "DIGEST_SECRET_KEY": "c" * 32}
            )
            services = Services.build(settings)
            upgrade(services.engine)
            total = Tally()
            spans = batches(len(ordered), DEFAULT_DAYS) if window == "daily" else [range(len(ordered))]
            for day, span in enumerate(spans):
                now = START + timedelta(days=day)
                ingest(
                    services, ordered[span.start : span.stop], now - timedelta(minutes=30), f"day{day}", root
                )
                total.add(tally(services, now - timedelta(days=1), now, readers))
            services.close()
            print(total.row(f"{window} ({len(spans)} windows)"))


if __name__ == "__main__":
    main()
