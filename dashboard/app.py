"""Entry script of the ecg-k dashboard (``ecgk dashboard``, or ``streamlit run dashboard/app.py``): the
three pages in ``views/``. Not ``pages/``: Streamlit would also find that folder by its old convention and,
for a deep link such as ``/review_queue``, run the page without this script. Each page draws the reviewer
sign-in in the sidebar itself (``ui.sidebar_sign_in``), so the form belongs to the page's script run
(Streamlit's AppTest only sees a multipage app's page elements)."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="ecg-k review and audit", page_icon=":material/monitor_heart:", layout="wide")
pages = st.navigation([
    st.Page("views/model_audit.py", title="Model audit", icon=":material/analytics:", default=True),
    st.Page("views/live_monitoring.py", title="Live monitoring", icon=":material/monitoring:"),
    st.Page("views/review_queue.py", title="Review queue", icon=":material/fact_check:"),
])
pages.run()
