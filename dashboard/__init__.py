"""The clinician review and few-shot audit dashboard (Streamlit): model audit, live monitoring and the review
queue, on the ecg-k database through ``ecg_k`` (never torch or ``training``). See docs/dashboard.md."""
