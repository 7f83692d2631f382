"""The fast-weight workbench in the browser: `workbench app` (or `streamlit run app.py` in a checkout).

The sidebar picks the model (a shipped checkpoint, an upload, or a fresh config) and the sequence;
each page in app_pages/ shows one analysis of that pair. All logic lives in workbench/. Installed with the
package; page paths are absolute, so the checkout's app.py can run this file as its own.
"""

from pathlib import Path

import streamlit as st

from workbench.app_support import widgets

PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="Fast-weight workbench", layout="wide")

page = st.navigation([
    st.Page(PAGES / "overview.py", title="Model and sequence", default=True),
    st.Page(PAGES / "attention.py", title="Attention"),
    st.Page(PAGES / "fast_weights.py", title="Fast weights"),
    st.Page(PAGES / "recall_probe.py", title="Recall probe"),
    st.Page(PAGES / "editing.py", title="Patch and edit"),
    st.Page(PAGES / "information_flow.py", title="Information flow"),
    st.Page(PAGES / "outliers.py", title="Outliers"),
    st.Page(PAGES / "kfac.py", title="K-FAC editing"),
    st.Page(PAGES / "steering.py", title="Steering"),
    st.Page(PAGES / "dictionaries.py", title="Dictionaries"),
])

with st.sidebar:
    widgets.sidebar()

page.run()
