"""The cryptopipe dashboard: live candles with forecasts, and the state of every pipeline.

    streamlit run dashboard/cryptopipe_dashboard/app.py -- --config dashboard.yaml
    streamlit run dashboard/cryptopipe_dashboard/app.py -- --kafka-bootstrap 127.0.0.1:19092 \
        --symbols BTCUSDT --intervals 1h --registry /path/to/registry/{symbol}
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cryptopipe_dashboard.views import current_config

PAGES = Path(__file__).resolve().parent / "pages"


def main() -> None:
    st.set_page_config(page_title="cryptopipe", layout="wide")
    try:
        current_config()
    except (ValueError, OSError, SystemExit) as error:
        st.error(f"The dashboard's configuration is invalid: {error}")
        return
    pages = [
        st.Page(PAGES / "market.py", title="Market", default=True),
        st.Page(PAGES / "pipelines.py", title="Pipelines"),
    ]
    st.navigation(pages).run()


main()
