"""Plain-text tables for the command line: the demo, sources status, the benchmark and the evaluation."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def text_table(
    rows: Sequence[Sequence[str]],
    *,
    separator: str = "  ",
    right_aligned: Collection[int] = (),
    rule: bool = True,
) -> list[str]:
    """Lines of `rows` in aligned columns; the first row is the header, underlined when `rule` is set."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = (
            c.rjust(w) if i in right_aligned else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return separator.join(cells).rstrip()

    lines = [line(rows[0])]
    if rule:
        # A rule runs through visible separators (" | " becomes "-|-") and leaves blank ones blank.
        joint = separator.replace(" ", "-") if separator.strip() else separator
        lines.append(joint.join("-" * w for w in widths))
    return lines + [line(row) for row in rows[1:]]
