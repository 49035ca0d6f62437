"""A check the chunking tests share."""

from __future__ import annotations

from typing import Sequence


def covers_exactly(spans: Sequence[tuple[int, int]], n_tokens: int) -> bool:
    """Whether spans tile ``[0, n_tokens)`` with no gap or overlap."""
    position = 0
    for start, end in spans:
        if start != position or end <= start:
            return False
        position = end
    return position == n_tokens
