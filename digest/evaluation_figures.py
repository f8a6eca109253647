"""The latest `digest evaluate`'s figures, kept as JSON in the data dir for the admin page.

The format lives in the package so the web app reads it without the evaluation harness (`tools/`) or its
numerical libraries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EVALUATION_FILE = "evaluation.json"
EVALUATION_FORMAT = 1
# The metrics kept per method, in the order the table shows them, with their column headings.
EVALUATION_METRICS: Mapping[str, str] = {
    "ndcg_first": "nDCG@10 day 1",
    "ndcg_later": "nDCG@10 later",
    "precision_first": "P@5 day 1",
    "precision_later": "P@5 later",
    "papers_per_digest": "papers/digest",
    "junk_share": "share judged 0",
    "ms_per_subscriber_day": "ms/reader-day",
}


@dataclass(frozen=True)
class EvaluationFigures:
    """Each method's metrics from the latest `digest evaluate`, averaged over its orderings of the papers."""

    ran_at: datetime
    orderings: int
    seeds: list[int]
    papers: int
    days: int
    subscribers: list[str]
    methods: dict[str, dict[str, float | None]]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": EVALUATION_FORMAT,
            "ran_at": self.ran_at.astimezone(UTC).isoformat(),
            "orderings": self.orderings,
            "seeds": list(self.seeds),
            "papers": self.papers,
            "days": self.days,
            "subscribers": list(self.subscribers),
            "methods": {name: dict(metrics) for name, metrics in self.methods.items()},
        }

    @classmethod
    def from_json(cls, data: object) -> EvaluationFigures:
        """Raises ValueError when `data` is not what `to_json` writes."""
        if not isinstance(data, dict) or data.get("format") != EVALUATION_FORMAT:
            raise ValueError("not an evaluation results file of a known format")
        try:
            ran_at = datetime.fromisoformat(data["ran_at"])
            methods = {
                str(name): {
                    key: (None if metrics.get(key) is None else float(metrics[key]))
                    for key in EVALUATION_METRICS
                }
                for name, metrics in data["methods"].items()
            }
            return cls(
                ran_at=ran_at if ran_at.tzinfo else ran_at.replace(tzinfo=UTC),
                orderings=int(data["orderings"]),
                seeds=[int(s) for s in data["seeds"]],
                papers=int(data["papers"]),
                days=int(data["days"]),
                subscribers=[str(s) for s in data["subscribers"]],
                methods=methods,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed evaluation results: {exc!r}") from None


def evaluation_path(data_dir: Path) -> Path:
    return data_dir / EVALUATION_FILE


def save_evaluation(figures: EvaluationFigures, path: Path) -> Path:
    """Write atomically, so the admin page never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(figures.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_evaluation(path: Path) -> EvaluationFigures | None:
    """None when the file does not exist; ValueError when it cannot be read as results."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    return EvaluationFigures.from_json(data)
