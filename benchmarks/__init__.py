"""Side-by-side benchmarks of raytrader against backtesting.py and vectorbt.

``make bench`` (or ``python -m benchmarks.run``) runs every section and writes
``benchmarks/RESULTS.md``; ``python -m benchmarks.run --only NAME`` runs one section.
"""
