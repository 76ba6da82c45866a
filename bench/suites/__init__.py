"""Benchmark suites: each module exposes ``run(quick: bool) -> dict``."""
