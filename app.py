"""The fast-weight workbench in the browser: `streamlit run app.py` (or `workbench app`).

The sidebar picks the model (a shipped checkpoint, an upload, or a fresh config) and the sequence;
each page in app_pages/ shows one analysis of that pair. All logic lives in workbench/.
"""

import streamlit as st

from workbench.app_support import widgets

st.set_page_config(page_title="Fast-weight workbench", layout="wide")

page = st.navigation([
    st.Page("app_pages/overview.py", title="Model and sequence", default=True),
    st.Page("app_pages/attention.py", title="Attention"),
    st.Page("app_pages/fast_weights.py", title="Fast weights"),
    st.Page("app_pages/recall_probe.py", title="Recall probe"),
    st.Page("app_pages/editing.py", title="Patch and edit"),
    st.Page("app_pages/outliers.py", title="Outliers"),
    st.Page("app_pages/kfac.py", title="K-FAC editing"),
])

with st.sidebar:
    widgets.sidebar()

page.run()
