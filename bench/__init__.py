"""Micro-benchmarks, run by ``make bench`` (``python -m bench``); see docs/benchmarks.md.

Each module listed in ``bench.__main__.BENCHMARKS`` exposes ``run(args) -> str`` and returns its
report as text; ``bench/timing.py`` holds the shared timing and formatting helpers.
"""
