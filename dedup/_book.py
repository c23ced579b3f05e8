"""One delta on one side of a book: the arithmetic every reader of books shares (the replay, the audit, the
coverage record's checks)."""

from __future__ import annotations


def apply_delta(levels: dict[int, int], price: int, delta: int) -> None:
    """One delta on one side's levels (price -> size); a level that reaches zero is gone."""
    q = levels.get(price, 0) + delta
    if q:
        levels[price] = q
    else:
        levels.pop(price, None)
