"""Review queue: flagged predictions waiting for their lab value. The reviewer looks at the stored ECG and
the estimate, enters the measured K+ and a verdict; it is written to the tables the API writes, audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import charts, ui
from dashboard.review_queue import (
    PredictionDetail,
    ReviewForm,
    ecg_trace,
    prediction_detail,
    record_read,
    review_queue,
    submit_review,
)
from ecg_k.data.lab_comments import LabComment
from ecg_k.db.ecg_store import EcgStoreError
from ecg_k.db.models import Verdict
from ecg_k.db.reviews import ITEMID_MAX, K_MAX
from ecg_k.db.session import session_scope
from ecg_k.potassium import RELIABILITY_NOTES, ShotRegion

READ = "predictions_read"  # session key: predictions whose opening this session already audited
NOTICE = "review_notice"
SERUM_ITEMID = 50971
VERDICT_LABELS = {Verdict.AGREE: "agree: the estimate is right",
                  Verdict.DISAGREE: "disagree: the estimate is wrong",
                  Verdict.UNUSABLE_ECG: "unusable ECG (no lab needed)"}
LAB_COMMENT_LABELS = {LabComment.NONE: "no comment",
                      LabComment.VERIFIED: "verified (e.g. 'not haemolysed')",
                      LabComment.HEMOLYSED: "haemolysed: K⁺ falsely high (kept, never used for retraining)"}


def _option(row: pd.Series) -> str:
    mark = "⚠ critical · " if row["critical"] else ""
    return (f"{mark}{row['flag']} {row['estimate']:.2f} mmol/L · {row['created']:%Y-%m-%d %H:%M} UTC · "
            f"{str(row['id'])[:8]}")


def _audit_read(database_url: str, prediction_id: uuid.UUID) -> None:
    """Audit the first opening of a prediction in this session (not every rerun)."""
    read = st.session_state.setdefault(READ, set())
    if prediction_id not in read:
        record_read(database_url, ui.signed_in(), prediction_id)
        read.add(prediction_id)


def _show_prediction(detail: PredictionDetail) -> None:
    estimate = "–" if detail.k_estimate is None else f"{detail.k_estimate:.2f} mmol/L"
    st.metric("K⁺ estimate", estimate, delta=detail.flag, delta_color="off")
    if detail.interval is not None:
        st.write(f"Prediction interval: **{detail.interval[0]:.2f} – {detail.interval[1]:.2f}** mmol/L")
    if detail.critical:
        st.error("Critical value (LL/HH).")
    if detail.shot_region is not None:
        note = RELIABILITY_NOTES[ShotRegion(detail.shot_region)]
        st.write(f"Shot region: **{detail.shot_region}**: {note}.")
    ecg_time = "unknown" if detail.ecg_time is None else f"{detail.ecg_time:%Y-%m-%d %H:%M} UTC"
    st.caption(f"Model {detail.model} · patient {detail.patient_id or '–'} · ECG recorded {ecg_time} · "
               f"served {detail.created_at:%Y-%m-%d %H:%M} UTC · prediction {detail.id}")
    if not detail.reviews.empty:
        st.markdown("**Earlier verdicts**")
        st.dataframe(detail.reviews, hide_index=True, width="stretch")


def _review_form(database_url: str, detail: PredictionDetail) -> None:
    who = ui.signed_in()
    can_review = who is not None and who.can_review
    if not can_review:
        st.info("Sign in with a reviewer key (sidebar) to record the lab value and a verdict.")
    # The lab must be drawn within 24 h of the ECG (ecg_k.db.reviews.LAB_WINDOW): start from the ECG's time.
    start = detail.ecg_time or datetime.now(UTC)
    with st.form("review", clear_on_submit=True):
        st.markdown("**Lab confirmation and verdict**")
        k_value = st.number_input("Lab K⁺ (mmol/L)", min_value=0.1, max_value=K_MAX, value=None, step=0.1,
                                  format="%.1f", disabled=not can_review)
        day, clock, item = st.columns(3)
        lab_day = day.date_input("Lab date (UTC)", value=start.date(), disabled=not can_review)
        lab_clock = clock.time_input("Lab time (UTC)", value=start.time().replace(second=0, microsecond=0),
                                     disabled=not can_review)
        itemid = item.number_input("Lab itemid", min_value=0, max_value=ITEMID_MAX, value=SERUM_ITEMID,
                                   step=1, help="50971: serum potassium (MIMIC-IV).", disabled=not can_review)
        comment_class = st.radio("Lab comment", list(LAB_COMMENT_LABELS), format_func=LAB_COMMENT_LABELS.get,
                                 horizontal=True, disabled=not can_review,
                                 help="What the laboratory wrote about the sample.")
        verdict = st.radio("Verdict", list(VERDICT_LABELS), format_func=VERDICT_LABELS.get, horizontal=True,
                           disabled=not can_review)
        comment = st.text_area("Comment (optional)", max_chars=2000, disabled=not can_review)
        submitted = st.form_submit_button("Submit review", type="primary", disabled=not can_review)
    if not submitted or who is None:
        return
    lab_time = datetime.combine(lab_day, lab_clock, tzinfo=UTC) if k_value is not None else None
    form = ReviewForm(verdict=verdict, k_value=k_value, lab_time=lab_time, itemid=int(itemid),
                      comment=comment or None, comment_class=comment_class)
    try:
        stored = submit_review(database_url, who, detail.id, form)
    except (ValueError, PermissionError) as err:
        st.error(f"Not saved: {err}")
        return
    lab = "" if stored.lab_confirmation_id is None else f"lab K⁺ {k_value:.1f} mmol/L and "
    st.session_state[NOTICE] = (f"Saved {lab}verdict '{Verdict(verdict).value}' for prediction "
                                f"{str(detail.id)[:8]}.")
    st.rerun()


def render() -> None:
    ui.sidebar_sign_in()
    st.title("Review queue")
    database_url = ui.settings().database_url
    if NOTICE in st.session_state:
        st.success(st.session_state.pop(NOTICE))
    with ui.database_errors(), session_scope(database_url) as session:
        queue = review_queue(session)
    st.metric("Flagged predictions waiting for a lab value", f"{queue.total:,}")
    if queue.table.empty:
        st.success("Nothing is waiting for review.")
        return
    shown = queue.table.assign(estimate=queue.table["estimate"].round(2), low=queue.table["low"].round(2),
                               high=queue.table["high"].round(2), id=queue.table["id"].astype(str))
    served = st.column_config.DatetimeColumn("served (UTC)", format="YYYY-MM-DD HH:mm")
    st.dataframe(shown, hide_index=True, width="stretch", height=240,
                 column_config={"created": served, "id": st.column_config.TextColumn("prediction")})
    if queue.total > len(queue.table):
        st.caption(f"Showing the first {len(queue.table)} of {queue.total}: critical first, then oldest "
                   "first.")
    options: dict[uuid.UUID, str] = {row["id"]: _option(pd.Series(row)) for row in queue.table.to_dict("records")}
    prediction_id = st.selectbox("Prediction to review", list(options), format_func=options.__getitem__)
    if prediction_id is None:  # only with no options, returned above
        return
    with ui.database_errors(), session_scope(database_url) as session:
        detail = prediction_detail(session, prediction_id)
    _audit_read(database_url, prediction_id)

    trace_column, side = st.columns([3, 2])
    with trace_column:
        try:
            st.altair_chart(charts.ecg_chart(ecg_trace(ui.ecg_store(), detail.ecg_sha256)), width="stretch")
        except EcgStoreError as err:
            st.warning(f"The stored ECG cannot be shown: {err}")
    with side:
        _show_prediction(detail)
        _review_form(database_url, detail)


render()
