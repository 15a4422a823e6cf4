"""A simulator's monotonic clock (its rate window) that moves only when a test moves it."""

from __future__ import annotations


class Ticker:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value
