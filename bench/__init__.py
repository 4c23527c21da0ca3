"""Benchmarks, each measured beside its anchor in one run (``scripts/benchmark.py``): env and
collection speed (:mod:`.envs`, :mod:`.collect`), model training and sampling speed
(:mod:`.models`), planning latency (:mod:`.plan`); tables and JSON (:mod:`.common`)."""
