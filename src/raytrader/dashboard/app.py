"""The dashboard's Streamlit entry script (``streamlit run app.py``; ``raytrader dashboard up``).

It reads the experiment API of ``RAYTRADER_EXPERIMENT_API_URL`` with the read token of
``RAYTRADER_EXPERIMENT_API_TOKEN`` (or its ``_FILE``); admin actions use
``RAYTRADER_EXPERIMENT_ADMIN_TOKEN`` (or its ``_FILE``), or a token typed in on the page.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from raytrader import settings
from raytrader.dashboard import pages
from raytrader.dashboard.client import ApiClient, DashboardError, read_token


@st.cache_resource(show_spinner=False)
def _client(base_url: str, token: str | None) -> ApiClient:
    return ApiClient(base_url, token)


def _page(render: Callable[[ApiClient], None], api: ApiClient) -> Callable[[], None]:
    def run() -> None:
        pages.show(render, api)

    run.__name__ = f"page_{render.__name__}"
    return run


def main() -> None:
    st.set_page_config(page_title="raytrader", page_icon=":material/monitoring:", layout="wide")
    base_url = settings.api_url()
    try:
        token = read_token()
    except DashboardError as exc:
        st.error(f"No token for the experiment API at **{base_url}**: {exc.detail}")
        return
    api = _client(base_url, token)
    nav = st.navigation([
        st.Page(_page(render, api), title=title, url_path=path, icon=icon, default=i == 0)
        for i, (title, path, icon, render) in enumerate(pages.PAGES)
    ])  # fmt: skip
    st.sidebar.caption(f"experiment API: {base_url}")
    if token is None:
        st.sidebar.warning("No read token: set RAYTRADER_EXPERIMENT_API_TOKEN(_FILE).")
    nav.run()


main()
