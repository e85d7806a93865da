"""Streamlit glue shared by the pages: this process's database and ECG store (the ``ECGK_`` settings, which
``ecgk dashboard`` passes on), cached loaders, the sidebar sign-in, and database problems shown as messages.

Caches are keyed by the database URL. Registry and evaluation data change rarely (cached for minutes);
monitoring aggregates for a minute; the review queue is never cached, so a reviewer sees their own writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from dashboard import monitoring
from dashboard.auth import SignedIn, sign_in
from dashboard.evaluation import Evaluation, ModelSummary, clinical_table, list_models, load_evaluation
from ecg_k.db.ecg_store import EcgStore
from ecg_k.db.session import session_scope
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.settings import Settings, get_settings

REGISTRY_TTL_S = 300
MONITORING_TTL_S = 60
SIGNED_IN = "signed_in"


def settings() -> Settings:
    """The settings of this dashboard process."""
    return get_settings()


def ecg_store() -> EcgStore:
    return EcgStore(settings().ecg_store)


@contextmanager
def database_errors() -> Iterator[None]:
    """Stop the page with a readable message when the database is unreachable or not migrated."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.InterfaceError) as err:
        shown = sa.make_url(settings().database_url).render_as_string(hide_password=True)
        st.error(f"The database {shown} is unavailable or not migrated (`ecgk db upgrade`): {err.orig}")
        st.stop()


def signed_in() -> SignedIn | None:
    """Who this browser session signed in as, if anyone."""
    return st.session_state.get(SIGNED_IN)


def sidebar_sign_in() -> None:
    """The sidebar's sign-in form, or who is signed in and a sign-out button."""
    who = signed_in()
    with st.sidebar:
        st.subheader("Reviewer sign-in")
        if who is not None:
            st.success(f"Signed in as {who.label}")
            if not who.can_review:
                st.warning(f"Read-only: role {who.role.value} may not record labs or verdicts.")
            if st.button("Sign out"):
                del st.session_state[SIGNED_IN]
                st.rerun()
            return
        with st.form("sign_in", clear_on_submit=True):  # the key does not stay in the widget
            key = st.text_input("API key", type="password",
                                help="A reviewer key (`ecgk keys create --role reviewer`).")
            submitted = st.form_submit_button("Sign in")
        if submitted and not key.strip():
            st.error("Enter an API key.")
        elif submitted:
            with database_errors():
                who = sign_in(settings().database_url, key)
            if who is None:
                st.error("Invalid or revoked API key.")
            else:
                st.session_state[SIGNED_IN] = who
                st.rerun()
        st.caption("Reading needs no key; recording labs and verdicts needs a reviewer key.")


@st.cache_data(ttl=REGISTRY_TTL_S, show_spinner=False)
def models(database_url: str) -> list[ModelSummary]:
    with session_scope(database_url) as session:
        return list_models(session)


@st.cache_data(ttl=REGISTRY_TTL_S, show_spinner="Loading the evaluation…")
def evaluation(database_url: str, model_id: int) -> Evaluation:
    with session_scope(database_url) as session:
        return load_evaluation(session, model_id)


@st.cache_data(ttl=REGISTRY_TTL_S, show_spinner="Bootstrapping confidence intervals…")
def clinical(database_url: str, named_ids: tuple[tuple[str, int], ...], split: str,
             extra: bool) -> pd.DataFrame:
    """:func:`~dashboard.evaluation.clinical_table` of the models ``(name, id)`` (the bootstrap is cached)."""
    return clinical_table({name: evaluation(database_url, model_id) for name, model_id in named_ids}, split,
                          extra)


@st.cache_data(ttl=REGISTRY_TTL_S, show_spinner=False)
def regions(database_url: str, model_id: int) -> ShotRegions:
    with session_scope(database_url) as session:
        return monitoring.model_regions(session, model_id)


@st.cache_data(ttl=MONITORING_TTL_S, show_spinner=False)
def prediction_span(database_url: str) -> tuple[date, date] | None:
    with session_scope(database_url) as session:
        return monitoring.prediction_span(session)


@dataclass(frozen=True)
class MonitoringData:
    """The aggregates of one monitoring window."""

    daily: pd.DataFrame
    flags: pd.DataFrame
    histogram: pd.DataFrame
    confirmed: pd.DataFrame


@st.cache_data(ttl=MONITORING_TTL_S, show_spinner="Aggregating predictions…")
def monitoring_data(database_url: str, window: monitoring.Window) -> MonitoringData:
    with session_scope(database_url) as session:
        counts = monitoring.served_counts(session, window)
        confirmed = monitoring.confirmed_errors(session, window)
    return MonitoringData(monitoring.daily_flag_counts(counts), monitoring.flag_counts(counts),
                          monitoring.prediction_histogram(counts), confirmed)
