"""Benchmarks: ``make bench`` (``python -m bench``) prints each issue's targets as figures."""
