"""The evaluation's tables, plot and saved figures, and `main_evaluate`, what `digest evaluate` runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from digest.evaluation_figures import EVALUATION_METRICS, EvaluationFigures, save_evaluation
from digest.tables import text_table
from tools.evaluation import (
    DEFAULT_DAYS,
    DEFAULT_OWN_LABELS,
    DEFAULT_PLOT_PATH,
    DEFAULT_RELEVANCE,
    DEFAULT_SEED,
    EvaluationResult,
    LabelSet,
    Method,
    Reader,
    _mean,
    later_days,
    read_own_labels,
    read_papers,
    read_shared_judgments,
    replay,
)
from tools.evaluation_methods import standard_methods


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mean_summary(
    results: Sequence[EvaluationResult], method: str, readers_of: Callable[[EvaluationResult], list[Reader]]
) -> dict[str, float | None]:
    runs = [r.summary(method, readers_of(r)) for r in results]
    return {key: _mean(run[key] for run in runs) for key in runs[0]}


def method_table(results: Sequence[EvaluationResult], label_set: str) -> list[str]:
    first = results[0]
    later = later_days(first.days)
    header = (
        "method",
        "nDCG@10 day 1",
        f"nDCG@10 days {later.start}-{later.stop - 1}",
        "P@5 day 1",
        f"P@5 days {later.start}-{later.stop - 1}",
        "papers/digest",
        "judged 0",
        "ms/reader-day",
    )
    rows = [header]
    for name in first.methods:
        s = _mean_summary(results, name, lambda r: r.readers_of(label_set))
        rows.append(
            (
                name,
                _cell(s["ndcg_first"]),
                _cell(s["ndcg_later"]),
                _cell(s["precision_first"]),
                _cell(s["precision_later"]),
                _cell(s["papers_per_digest"], 1),
                _cell(None if s["junk_share"] is None else 100 * s["junk_share"], 0) + "%",
                _cell(s["ms_per_subscriber_day"], 1),
            )
        )
    personas = [r.persona for r in first.readers_of(label_set)]
    return [
        f"{label_set} judgments: {len(personas)} personas ({', '.join(personas)}), {first.papers} papers "
        f"in {first.days} days of {min(first.batch_sizes)}-{max(first.batch_sizes)}, "
        f"mean over {len(results)} ordering(s) (seeds {results[0].seed}..{results[-1].seed})",
        *text_table(rows, right_aligned=range(1, len(header))),
    ]


def persona_table(results: Sequence[EvaluationResult], label_set: str, compare: Sequence[str]) -> list[str]:
    """Ours per persona beside the reference methods, so a weak persona is visible."""
    first = results[0]
    later = later_days(first.days)
    span = f"{later.start}-{later.stop - 1}"
    present = [m for m in compare if m in first.methods and m != "ours"]
    header = ["persona", "ours day 1", f"ours days {span}"]
    for name in present:
        header += [f"{name} day 1", f"{name} days {span}"]
    header += ["papers/digest", "judged 0"]
    rows = [tuple(header)]
    for reader in first.readers_of(label_set):

        def pick(result: EvaluationResult, r: Reader = reader) -> list[Reader]:
            return [x for x in result.readers if x.name == r.name]

        ours = _mean_summary(results, "ours", pick)
        row = [reader.persona, _cell(ours["ndcg_first"]), _cell(ours["ndcg_later"])]
        for name in present:
            theirs = _mean_summary(results, name, pick)
            row += [_cell(theirs["ndcg_first"]), _cell(theirs["ndcg_later"])]
        junk = ours["junk_share"]
        row += [_cell(ours["papers_per_digest"], 1), _cell(None if junk is None else 100 * junk, 0) + "%"]
        rows.append(tuple(row))
    return [
        f"{label_set} judgments per persona, nDCG@10 (ours: papers per digest, share judged 0)",
        *text_table(rows, right_aligned=range(1, len(header))),
    ]


def plot(results: Sequence[EvaluationResult], label_set: str, path: Path) -> Path:
    """One line per method over the days: the curve shows how fast votes pay off, which a mean hides."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    first = results[0]
    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    days = list(range(1, first.days + 1))
    for name in first.methods:
        curves = [r.ndcg_by_day(name, r.readers_of(label_set)) for r in results]
        values = [np.nan if (v := _mean(c[d - 1] for c in curves)) is None else v for d in days]
        axes.plot(days, values, marker="o", label=name)
    axes.set_xlabel("simulated day")
    axes.set_ylabel("mean nDCG@10")
    axes.set_xticks(days)
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(
        f"nDCG@10 by day, {label_set} judgments: {len(first.readers_of(label_set))} personas, "
        f"{first.papers} papers, {len(results)} ordering(s)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def figures(
    results: Sequence[EvaluationResult], label_set: str, ran_at: datetime | None = None
) -> EvaluationFigures:
    """What the admin page shows: each method's metrics on one label set, averaged over the orderings."""
    if not results:
        raise ValueError("no evaluation results to summarise")
    first = results[0]
    methods = {
        name: {
            key: value
            for key, value in _mean_summary(results, name, lambda r: r.readers_of(label_set)).items()
            if key in EVALUATION_METRICS
        }
        for name in first.methods
    }
    return EvaluationFigures(
        ran_at=ran_at or datetime.now(UTC),
        orderings=len(results),
        seeds=[r.seed for r in results],
        papers=first.papers,
        days=first.days,
        subscribers=[r.persona for r in first.readers_of(label_set)],
        methods=methods,
    )


def report(results: Sequence[EvaluationResult]) -> list[str]:
    lines: list[str] = []
    for label_set in results[0].label_sets():
        lines += [*method_table(results, label_set), ""]
    for label_set in results[0].label_sets():
        lines += [*persona_table(results, label_set, ["keywords", "svm"]), ""]
    return lines


def main_evaluate(
    listings_dir: Path,
    relevance_dir: Path | None = DEFAULT_RELEVANCE,
    own_labels: Path | None = DEFAULT_OWN_LABELS,
    *,
    days: int = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    repeats: int = 1,
    personas: Sequence[str] | None = None,
    methods: Callable[[int], list[Method]] = standard_methods,
    plot_path: Path | None = DEFAULT_PLOT_PATH,
    results_path: Path | None = None,
    echo: Callable[[str], None] = print,
) -> list[EvaluationResult]:
    """The `digest evaluate` command: replay `repeats` orderings, print the tables, draw the plot and save
    the figures of the first label set (the shared judgments when given) for the admin page."""
    papers = read_papers(listings_dir)
    label_sets: list[LabelSet] = []
    if relevance_dir is not None:
        label_sets.append(read_shared_judgments(relevance_dir).only(personas))
    if own_labels is not None:
        label_sets.append(read_own_labels(own_labels, papers).only(None if label_sets else personas))
    if not label_sets:
        raise ValueError("no judgments to evaluate with")
    results = [
        replay(papers, label_sets, methods(s), days=days, seed=s) for s in range(seed, seed + max(1, repeats))
    ]
    for line in report(results):
        echo(line)
    main_set = label_sets[0].name
    if plot_path is not None:
        echo(f"plot ({main_set} judgments): {plot(results, main_set, plot_path)}")
    if results_path is not None:
        echo(f"results: {save_evaluation(figures(results, main_set), results_path)}")
    return results
