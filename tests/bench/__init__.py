"""Benchmarks of the engine, run with ``python -m tests.bench`` (``make bench``)."""

from __future__ import annotations
