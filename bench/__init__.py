"""Benchmarks, run as scripts (``python bench/NAME.py``); a package only so that type checkers
name ``bench/central.py`` ``bench.central``, not ``central``."""
