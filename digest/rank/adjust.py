"""A reader's own say over their profile: terms muted or boosted on the preferences page.

Votes move a profile gently and only by example; a mute is an explicit order, so it is applied last, on
top of whatever the keywords and votes made, and outweighs the profile's strongest term.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from digest.rank.features import N_FEATURES, term_columns, unit_rows

MUTE = "mute"
BOOST = "boost"
ACTIONS = (MUTE, BOOST)
MAX_ADJUSTMENTS = 50
# A muted term weighs this many times the profile's strongest column, negatively; a boosted one as much.
MUTE_STRENGTH = 1.0
BOOST_STRENGTH = 0.6

Adjustments = Mapping[str, Mapping[str, Any]]


def adjusted(vector: sp.csr_matrix, adjustments: Adjustments | None) -> sp.csr_matrix:
    """`vector` with each muted term's columns set strongly negative and each boosted one's raised."""
    if not adjustments:
        return vector
    vector = sp.csr_matrix(vector, dtype=np.float32, copy=True)
    vector.sum_duplicates()
    largest = float(np.abs(vector.data).max()) if vector.nnz else 1.0
    values = dict(zip(vector.indices.tolist(), vector.data.tolist(), strict=True))
    for entry in adjustments.values():
        action = entry.get("action")
        names = [str(t) for t in entry.get("terms", [])]
        if action not in ACTIONS or not names:
            continue
        for column in _columns(tuple(names)):
            if action == MUTE:
                values[column] = -MUTE_STRENGTH * largest
            else:
                values[column] = max(values.get(column, 0.0), BOOST_STRENGTH * largest)
    columns = np.array(sorted(values), dtype=np.int64)
    data = np.array([values[c] for c in columns.tolist()], dtype=np.float32)
    row = sp.csr_matrix((data, (np.zeros(len(columns), dtype=np.int64), columns)), shape=(1, N_FEATURES))
    return unit_rows(row)


@lru_cache(maxsize=4096)
def _columns(names: tuple[str, ...]) -> list[int]:
    """A muted term's columns never move (the space is hashed), so each run hashes a term once, not once
    per reader who muted it."""
    return term_columns(names)
