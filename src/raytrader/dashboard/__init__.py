"""The experiment dashboard: a Streamlit app that reads the experiment API (never the store).

``raytrader dashboard up`` starts it (:mod:`raytrader.dashboard.cli`); :mod:`.client` is its
typed HTTP client, :mod:`.pages` the pages (their tables and charts are built by plain functions
over API responses, testable without a browser) and ``app.py`` the Streamlit entry script.
"""
