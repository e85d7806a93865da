"""Render time of each dashboard page with 100 000 predictions in the database (target: under 2 s a page).

Seeds a temporary SQLite database: two registered synthetic models whose evaluation has the size of a real
balanced test set (``--per-bin`` labels per 0.1 mmol/L bin, 2.0-7.5 mmol/L), one month of ``--predictions``
served predictions (30 % lab-confirmed) from ``ecgk_demo.traffic``. Then runs every page with Streamlit's
``AppTest`` (the page script with its queries, computations and chart specs, as the server runs it for a
browser) in a process whose imports are already warm:

- cold: every Streamlit cache cleared first (a page opened for the first time, or after the cache expired);
- warm: the same page run again in the same session (cached evaluation and aggregates; the review queue is
  never cached).

Each figure is the median of ``--repeat`` runs; the last column is cold time / 2 s.

Usage: ``.venv/bin/python benchmarks/dashboard_render.py [--predictions 100000] [--per-bin 100] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from ecg_k.db.api_keys import create_api_key
from ecg_k.db.ecg_store import EcgStore
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import Prediction, Role
from ecg_k.db.registry import promote, register_model
from ecg_k.db.session import session_scope
from ecg_k.settings import get_settings
from ecgk_demo.traffic import seed_traffic, write_synthetic_run

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
PAGES = {"model audit": "views/model_audit.py", "live monitoring": "views/live_monitoring.py",
         "review queue": "views/review_queue.py"}
TARGET_S = 2.0
ACTOR = "benchmark"


def seed(home: Path, n_predictions: int, per_bin: int) -> str:
    """A migrated SQLite database under ``home`` with two evaluated models and the served traffic."""
    database_url = f"sqlite:///{home / 'ecgk.db'}"
    upgrade(database_url)
    cards = [write_synthetic_run(home / "runs" / method, method, shrink=shrink, per_bin=per_bin, seed=seed)
             for method, shrink, seed in (("vanilla", 0.55, 1), ("dist", 0.85, 2))]
    with session_scope(database_url) as session:
        challenger, champion = (register_model(session, card, actor=ACTOR) for card in cards)
        promote(session, champion.name, champion.version, actor=ACTOR)
        reviewer = create_api_key(session, Role.REVIEWER, actor=ACTOR).key
        seed_traffic(session, EcgStore(home / "ecg-store"), [champion.id, challenger.id],
                     n_predictions=n_predictions, reviewer_id=reviewer.id, end=datetime.now(UTC),
                     lab_fraction=0.3)
    return database_url


def render_s(page: str, cold: bool) -> tuple[float, float]:
    """Seconds of a first run of ``page`` in a new session (caches cleared first when ``cold``) and of a
    second run in the same session. An untimed run of the entry page comes first: AppTest scans the installed
    packages for components on a session's first run (~0.6 s), which a server does once at start-up."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(APP), default_timeout=120)
    app.run()
    app.switch_page(page)
    if cold:
        st.cache_data.clear()
    start = time.perf_counter()
    app.run()
    first = time.perf_counter() - start
    if app.exception:
        raise RuntimeError(f"{page} raised: {app.exception[0].value}")
    start = time.perf_counter()
    app.run()
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=100_000, help="served predictions to seed")
    parser.add_argument("--per-bin", type=int, default=100, help="val/test labels per 0.1 mmol/L bin")
    parser.add_argument("--repeat", type=int, default=3, help="runs per page and cache state (median)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # AppTest's "no runtime" notices on every run

    with tempfile.TemporaryDirectory(prefix="ecgk-bench-dashboard-") as folder:
        home = Path(folder)
        start = time.perf_counter()
        database_url = seed(home, args.predictions, args.per_bin)
        with session_scope(database_url) as session:
            n = session.scalar(sa.select(sa.func.count()).select_from(Prediction))
        print(f"seeded {n:,} predictions in {time.perf_counter() - start:.1f} s ({database_url})")
        os.environ.update(ECGK_HOME=str(home), ECGK_DATABASE_URL=database_url)
        get_settings.cache_clear()
        for page in PAGES.values():  # imports and first-use costs, not counted
            render_s(page, cold=True)
        print(f"{'page':<16} {'cold s':>7} {'warm s':>7} {'cold / 2 s':>10}")
        for name, page in PAGES.items():
            runs = [render_s(page, cold=True) for _ in range(args.repeat)]
            cold = statistics.median(first for first, _ in runs)
            warm = statistics.median(second for _, second in runs)
            print(f"{name:<16} {cold:>7.2f} {warm:>7.2f} {cold / TARGET_S:>10.2f}")


if __name__ == "__main__":
    main()
