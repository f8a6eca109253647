"""The profile as a reader can read and steer it: what pulls papers in and pushes them out, in words.

The ranking works on hashed columns of words and word pairs; shown raw they read like model internals
("lora", "low-rank", "low rank", "rank", "low" as five entries, "indice" for indices, "based" as a
dislike). Here the columns are named from what shaped the profile (the topics as typed, the papers voted
on), a topic's words become one entry under the topic's own name, a word pair absorbs its words and
spelling variants, words common to most papers are left out, and each side is scaled on its own so a
"less" vote shows next to much stronger keywords.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sqlalchemy import select

from digest.models import Feedback, Listing, Subscriber, Vote
from digest.rank.adjust import ACTIONS
from digest.rank.features import N_FEATURES, FeatureSpace, term_columns, terms, words
from digest.rank.learned import current_space, learned_vectors, load_votes
from digest.rank.profile import MIN_LIKES_TO_LEARN, MIN_VOTES_TO_LEARN, profile
from digest.services import Services

# A word from voted papers that appears in more than this share of all papers describes most papers,
# not this reader ("based", "existing", "introduce"); a word pair is dropped when either word is this
# common ("demonstrate GOAT"), or when the voted papers use it only once (a pair that is no phrase).
GENERIC_SHARE = 0.15
GENERIC_WORD_IN_PAIR_SHARE = 0.25
MIN_PAIR_USES = 2
# Below this many papers a share says nothing: in a corpus of five, every word is in a fifth of it.
GENERIC_MIN_PAPERS = 200
STRONG = 0.6
SOME = 0.3
# A word pair renames the entry of its word when it weighs nearly as much.
PAIR_NAMES_ENTRY = 0.8
LIKES_SHOWN = 10
# Entries drawn from the words of a single voted paper, at most.
PER_PAPER = 3
DISLIKES_SHOWN = 8
_RAW_TOKEN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


@dataclass
class Leaning:
    """One entry of the profile: a name a person would write, and the analyzer terms behind it."""

    label: str
    weight: float
    terms: list[str]
    from_topic: bool = False
    adjustment: str | None = None
    share: float = 0.0  # of the strongest entry on the same side, for the bar
    named_by: str = ""  # the term the label spells; "" for a topic, which is named as typed

    @property
    def steered_terms(self) -> list[str]:
        """What a mute or boost of this entry acts on: a topic's every term; otherwise the named term and
        the members that contain it ("diffusion" takes "diffusion transformer", not "video")."""
        if not self.named_by:
            return list(self.terms)
        named = set(self.named_by.split(" "))
        joined = self.named_by.replace(" ", "")
        return [t for t in self.terms if named <= set(t.split(" ")) or t.replace(" ", "") == joined]

    @property
    def strength(self) -> str:
        if self.share >= STRONG:
            return "strong"
        return "some" if self.share >= SOME else "slight"


@dataclass
class Portrait:
    likes: list[Leaning]
    dislikes: list[Leaning]
    adjusted: list[Leaning]
    votes: int
    liked_votes: int
    model_started: bool
    adjustments: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def votes_until_model(self) -> int:
        """Votes still needed before the personal model starts (both conditions of `can_learn`)."""
        if self.model_started:
            return 0
        return max(MIN_VOTES_TO_LEARN - self.votes, MIN_LIKES_TO_LEARN - self.liked_votes, 0)

    @property
    def likes_until_model(self) -> int:
        return 0 if self.model_started else max(MIN_LIKES_TO_LEARN - self.liked_votes, 0)


def portrait(services: Services, subscriber_id: int) -> Portrait:
    space = current_space(services, refit=False)
    with services.sessions() as session:
        row = session.execute(
            select(Subscriber.topics, Subscriber.term_adjustments).where(Subscriber.id == subscriber_id)
        ).one_or_none()
        topics = list(row.topics or []) if row else []
        adjustments = dict(row.term_adjustments or {}) if row else {}
        loaded = load_votes(session, space, [subscriber_id]).get(subscriber_id)
        voted = session.execute(
            select(Listing.title, Listing.abstract, Feedback.vote)
            .join(Feedback, Feedback.listing_id == Listing.id)
            .where(Feedback.subscriber_id == subscriber_id)
        ).all()
        learned = learned_vectors(session, {subscriber_id: loaded.key}).get(subscriber_id) if loaded else None
    keyword = space.keyword_vector(topics) if topics else sp.csr_matrix((1, N_FEATURES), dtype=np.float32)
    vector = profile(keyword, loaded.votes, learned) if loaded else keyword
    voted_texts = [f"{title}. {abstract}" for title, abstract, _ in voted]
    likes, dislikes = describe(space, vector, topics, voted_texts)
    adjusted = [
        Leaning(label, 0.0, list(entry.get("terms", [])), adjustment=str(entry.get("action")))
        for label, entry in sorted(adjustments.items())
        if entry.get("action") in ACTIONS
    ]
    for entry in [*likes, *dislikes]:
        action = adjustments.get(entry.label, {}).get("action")
        entry.adjustment = action if action in ACTIONS else None
    liked_votes = sum(1 for *_, vote in voted if vote == Vote.MORE)
    return Portrait(
        likes=[e for e in likes if e.adjustment is None][:LIKES_SHOWN],
        dislikes=[e for e in dislikes if e.adjustment is None][:DISLIKES_SHOWN],
        adjusted=adjusted,
        votes=len(voted),
        liked_votes=liked_votes,
        model_started=learned is not None,
        adjustments=adjustments,
    )


def describe(
    space: FeatureSpace, vector: sp.csr_matrix, topics: Sequence[str], voted_texts: Sequence[str]
) -> tuple[list[Leaning], list[Leaning]]:
    """The profile's leanings, strongest first: (pulling in, pushing out), each scaled on its own."""
    weights = dict(zip(vector.indices.tolist(), vector.data.tolist(), strict=True))
    surface = surface_forms([*topics, *voted_texts])

    def weight_of(names: Sequence[str]) -> list[float]:
        return [float(weights.get(column, 0.0)) for column in term_columns(names)]

    entries: list[Leaning] = []
    claimed: set[str] = set()
    for topic in topics:
        members = sorted(set(terms(space.expand(topic))))
        member_weights = weight_of(members)
        present = [(t, w) for t, w in zip(members, member_weights, strict=True) if w]
        claimed.update(members)
        if present:
            strongest = max((w for _, w in present), key=abs)
            entries.append(Leaning(topic.strip(), strongest, [t for t, _ in present], from_topic=True))

    uses = Counter(t for text in voted_texts for t in terms(text))
    topic_words = {t for t in claimed if " " not in t}
    candidates = sorted(t for t in set(uses) - claimed if not set(t.split(" ")) <= topic_words)
    share = _doc_share(space, sorted({*candidates, *(w for t in candidates for w in t.split(" "))}))
    scored = [
        (t, w)
        for t, w in zip(candidates, weight_of(candidates), strict=True)
        if w and _telling(t, uses[t], share) and _readable(t, surface)
    ]
    scored.sort(key=lambda pair: -abs(pair[1]))
    voted_entries: list[Leaning] = []
    for term, weight in scored:
        home = _merge_target(term, weight, voted_entries)
        if home is None:
            voted_entries.append(Leaning(_label(term, surface), weight, [term], named_by=term))
            continue
        home.terms.append(term)
        if (
            " " in term
            and " " not in home.label
            and abs(weight) >= PAIR_NAMES_ENTRY * abs(home.weight)
            and not set(term.split(" ")) & topic_words
        ):
            home.label = _label(term, surface)  # "low rank" names the entry better than "rank"
            home.named_by = term
    entries.extend(_few_per_paper(voted_entries, voted_texts))

    likes = sorted((e for e in entries if e.weight > 0), key=lambda e: -e.weight)
    dislikes = sorted((e for e in entries if e.weight < 0), key=lambda e: e.weight)
    for side in (likes, dislikes):
        largest = max((abs(e.weight) for e in side), default=0.0)
        for entry in side:
            entry.share = abs(entry.weight) / largest if largest else 0.0
    return likes, dislikes


def _few_per_paper(entries: list[Leaning], voted_texts: Sequence[str]) -> list[Leaning]:
    """At most PER_PAPER entries whose words only one voted paper uses: one "less" vote would otherwise
    fill the list with that paper's vocabulary ("stylecodes", "style", "srefs", "stylistic", ...)."""
    papers_of: dict[str, set[int]] = defaultdict(set)
    for number, text in enumerate(voted_texts):
        for term in set(terms(text)):
            papers_of[term].add(number)
    shown: Counter[int] = Counter()
    kept = []
    for entry in entries:  # strongest first
        papers = papers_of.get(entry.named_by or entry.terms[0], set())
        if len(papers) == 1:
            (paper,) = papers
            if shown[paper] >= PER_PAPER:
                continue
            shown[paper] += 1
        kept.append(entry)
    return kept


def _merge_target(term: str, weight: float, entries: Iterable[Leaning]) -> Leaning | None:
    """The entry `term` belongs to: one leaning the same way that contains its words, or its spelling."""
    own_words = set(term.split(" "))
    joined = term.replace(" ", "")
    for entry in entries:
        if (entry.weight > 0) != (weight > 0):
            continue
        for member in entry.terms:
            member_words = set(member.split(" "))
            if (
                own_words <= member_words
                or member_words <= own_words
                or member.replace(" ", "") == joined
                or joined in member_words
                or member.replace(" ", "") in own_words
            ):
                return entry
    return None


def _doc_share(space: FeatureSpace, names: Sequence[str]) -> dict[str, float]:
    """The share of all papers each term appears in, read back from its IDF weight."""
    if not names or space.n_docs < GENERIC_MIN_PAPERS:
        return {}
    idf = space.idf[np.array(term_columns(names), dtype=np.int64)]
    # idf = ln((1 + n) / (1 + df)) + 1, solved for df.
    df = (1 + space.n_docs) / np.exp(idf.astype(np.float64) - 1) - 1
    return {name: count / space.n_docs for name, count in zip(names, df.tolist(), strict=True)}


def _telling(term: str, uses: int, share: Mapping[str, float]) -> bool:
    if share.get(term, 0.0) > GENERIC_SHARE:
        return False
    parts = term.split(" ")
    if len(parts) == 1:
        return True
    first, second = parts
    if first in second or second in first:
        return False  # a hyphenated word's joined form next to its own part: "expert mixtureofexpert"
    return uses >= MIN_PAIR_USES and all(share.get(p, 0.0) <= GENERIC_WORD_IN_PAIR_SHARE for p in parts)


def surface_forms(texts: Iterable[str]) -> dict[str, str]:
    """Each analyzer word as the texts spell it most often: "indice" → "indices", "lowrank" → "low-rank",
    "lora" → "LoRA" (a capital past the first letter is kept; a sentence's first capital is not)."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for text in texts:
        for token in _RAW_TOKEN.findall(text):
            parts = [p if any(c.isupper() for c in p[1:]) else p.lower() for p in token.split("-") if p]
            spelled = "-".join(parts)
            for part, analysed in zip(parts, (words(p) for p in parts), strict=True):
                if len(analysed) == 1:
                    seen[analysed[0]][part] += 1
            if len(parts) > 1:
                joined = words("".join(parts))
                if joined:
                    seen[joined[-1]][spelled] += 1
    return {word: forms.most_common(1)[0][0] for word, forms in seen.items()}


def _readable(term: str, surface: Mapping[str, str]) -> bool:
    """Leave out what no reader would recognise: a two or three letter word not written in capitals."""
    for word in term.split(" "):
        if word.isdigit():
            return False
        shown = surface.get(word, word)
        if len(word) <= 3 and not any(c.isupper() for c in shown):
            return False
    return True


def _label(term: str, surface: Mapping[str, str]) -> str:
    return " ".join(surface.get(word, word) for word in term.split(" "))
