"""The experiment store: every run, episode, step, backtest, trade, search and evaluation, in
PostgreSQL (SQLite for the embedded demo and unit tests), with Alembic migrations.

* :mod:`raytrader.db.models` — the tables and their keys;
* :mod:`raytrader.db.engine` — the URL (``RAYTRADER_DB_URL``), connecting, ``upgrade``;
* :mod:`raytrader.db.store` — :class:`ExperimentStore`, the transactional, idempotent writer;
* :mod:`raytrader.db.queries` — the reads the REST API serves (filters, cursor pages).
"""
