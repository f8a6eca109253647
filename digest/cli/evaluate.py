"""`digest evaluate`: the ranking evaluation harness of the source checkout (`tools/evaluation.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest.config import ConfigError, get_settings


@click.command()
@click.option(
    "--listings",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of listing dumps (default: ../shared/listings beside the project).",
)
@click.option(
    "--judgments",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder with personas.json and judgments.tsv (default: ../shared/relevance beside the project).",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The project's own labels, printed second (default: digest/evaluation_labels.tsv).",
)
@click.option("--no-own-labels", is_flag=True, help="Evaluate on the shared judgments only.")
@click.option(
    "--days", type=int, default=8, show_default=True, help="Daily batches to split the papers into."
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("var/evaluation.png"),
    show_default=True,
)
@click.option("--no-plot", is_flag=True, help="Do not write the PNG.")
@click.option("--persona", "personas", multiple=True, help="Only these personas (repeatable).")
@click.option(
    "--repeats",
    type=int,
    default=3,
    show_default=True,
    help="Replays with differently shuffled days (seeds seed, seed+1, ...), averaged.",
)
def evaluate(
    listings: Path | None,
    judgments: Path | None,
    labels: Path | None,
    no_own_labels: bool,
    days: int,
    seed: int,
    plot_path: Path,
    no_plot: bool,
    personas: tuple[str, ...],
    repeats: int,
) -> None:
    """Replay the judged sample papers as days of digests and compare ranking methods.

    "ours" is the product: each day's papers are ingested, `digest run` sends the digests to a data dir
    of its own, and the readers' votes go through the emails' links. The figures of the shared
    judgments are also saved to evaluation.json in the data dir, where the admin pages show them.
    """
    from digest.demo import DEFAULT_LISTINGS
    from digest.evaluation_figures import evaluation_path

    # The harness is tooling kept out of the package: it lives in the source checkout this package was
    # installed from (`pip install -e .`), beside `digest/`.
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "tools" / "evaluation_report.py").is_file() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        from tools.evaluation import DEFAULT_OWN_LABELS, DEFAULT_RELEVANCE
        from tools.evaluation_report import main_evaluate
    except ImportError:
        raise click.ClickException(
            "the evaluation harness (tools/evaluation.py) is part of a source checkout, not of the "
            "installed package: run `digest evaluate` from the project's folder"
        ) from None

    try:
        results_path = evaluation_path(get_settings().data_dir)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    try:
        main_evaluate(
            listings or DEFAULT_LISTINGS,
            judgments or DEFAULT_RELEVANCE,
            None if no_own_labels else (labels or DEFAULT_OWN_LABELS),
            days=days,
            seed=seed,
            repeats=max(1, repeats),
            personas=list(personas) or None,
            plot_path=None if no_plot else plot_path,
            results_path=results_path,
            echo=click.echo,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
