"""End to end: the real dashboard server (``ecgk dashboard``'s command line) driven by Debian's headless
Chromium through Selenium. Each page renders without a Streamlit exception (a screenshot per page is
saved), the audit page shows the seeded evaluation's numbers, and a review submitted in the browser is in
the database afterwards, with its audit events.

Without chromium and chromium-driver these tests are skipped, except under CI=true, where they fail
(``scripts/test.sh`` installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from dashboard.launch import HEALTH_PATH, dashboard_environment, streamlit_command
from ecg_k.db.models import AuditEvent, LabConfirmation, Review, Verdict
from ecg_k.db.session import session_scope
from ecgk_demo.loopback import free_port, running_server
from tests.dashboard.conftest import Seeded, seed_home
from tests.ecg_k.db.conftest import in_ci

CHROMIUM = Path(os.environ.get("ECGK_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("ECGK_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
SHOTS_COPY = Path("/tmp/dashboard-shots")
"""Where the screenshots are copied for people to look at (the originals live in pytest's tmp dir)."""
WAIT_S = 90
PAGES = {"model_audit": "", "live_monitoring": "live_monitoring", "review_queue": "review_queue"}


def require_chromium(binaries: tuple[Path, ...], environ: Mapping[str, str]) -> None:
    """Return if headless Chromium can be driven with ``binaries``; else skip, or fail under CI."""
    missing = [str(path) for path in binaries if not path.is_file()]
    if not missing:
        return
    message = f"Chromium unavailable: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
    if in_ci(environ):
        pytest.fail(f"{message}; CI is set, so the browser tests must run")
    pytest.skip(message)


def test_missing_chromium_is_a_skip_outside_ci_and_a_failure_in_it(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="Chromium unavailable"):
        require_chromium((tmp_path / "chromium",), {})
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_chromium((tmp_path / "chromium",), {"CI": "true"})


@contextmanager
def running_dashboard(database_url: str, *, home: Path, log_path: Path) -> Iterator[str]:
    """Serve the dashboard on a free 127.0.0.1 port for ``database_url``; yields its URL once
    ``/_stcore/health`` answers, and stops the server when the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_server(streamlit_command("127.0.0.1", port), url + HEALTH_PATH,
                        env=dashboard_environment(database_url, home), log_path=log_path, timeout_s=60.0):
        yield url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Seeded, str]]:
    """A seeded home of its own and the dashboard serving it on a free loopback port."""
    require_chromium((CHROMIUM, CHROMEDRIVER), os.environ)
    seeded = seed_home(tmp_path_factory.mktemp("dashboard-e2e") / "home")
    with running_dashboard(seeded.database_url, home=seeded.home, log_path=seeded.home / "dashboard.log") as url:
        yield seeded, url


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    require_chromium((CHROMIUM, CHROMEDRIVER), os.environ)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1200"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-screenshots")


def _rendered(driver: WebDriver) -> bool:
    """The script run is over and every visible chart has been drawn (a chart in a hidden tab is drawn only
    when its tab opens)."""
    try:
        idle = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"][data-test-script-state="notRunning"]')
        charts = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]')
        drawn = all(chart.find_elements(By.CSS_SELECTOR, "canvas, svg")
                    for chart in charts if chart.is_displayed())
        return bool(idle) and bool(driver.find_elements(By.TAG_NAME, "h1")) and drawn
    except StaleElementReferenceException:
        return False


def _wait_rendered(driver: WebDriver) -> None:
    WebDriverWait(driver, WAIT_S, poll_frequency=0.25).until(_rendered)


def _screenshot(driver: WebDriver, folder: Path, name: str) -> Path:
    """A screenshot of the whole page (the window grown to the page's height), also copied to SHOTS_COPY."""
    height = driver.execute_script('return document.querySelector("[data-testid=stMain]").scrollHeight')
    driver.set_window_size(1600, min(max(int(height) + 100, 1200), 8000))
    _wait_rendered(driver)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1600, 1200)
    SHOTS_COPY.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS_COPY / path.name)
    print(f"screenshot: {path} (copy: {SHOTS_COPY / path.name})")
    return path


def _text(driver: WebDriver) -> str:
    return driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text


def _no_exception(driver: WebDriver) -> None:
    exceptions = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert exceptions == [], [exception.text[:500] for exception in exceptions]


@pytest.mark.slow
def test_every_page_renders_without_exception(served: tuple[Seeded, str], browser: WebDriver, shots: Path) -> None:
    """Deep links first (the server's first request is one), then every tab of the audit."""
    seeded, url = served
    titles = {"review_queue": "Review queue", "live_monitoring": "Live monitoring", "model_audit": "Model audit"}
    for name, title in titles.items():
        browser.get(f"{url}/{PAGES[name]}")
        _wait_rendered(browser)
        assert browser.find_element(By.TAG_NAME, "h1").text == title
        navigation = [link.text.splitlines()[-1]
                      for link in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]')]
        assert navigation == ["Model audit", "Live monitoring", "Review queue"]  # the app's, not pages/'s
        _no_exception(browser)
        assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"]')
        assert _screenshot(browser, shots, name).stat().st_size > 10_000
    tabs = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] [data-testid="stTab"]')
    assert [tab.text for tab in tabs] == ["Shot regions", "Error per 0.1 mmol/L bin", "Labels vs predictions",
                                          "Sorted errors", "Predicted vs actual", "Clinical operating points",
                                          "Prediction sets and probabilities"]
    for number, tab in enumerate(tabs[1:], start=2):
        tab.click()
        _wait_rendered(browser)
        _no_exception(browser)
        _screenshot(browser, shots, f"model_audit_tab{number}")


@pytest.mark.slow
def test_audit_page_shows_the_seeded_evaluation(served: tuple[Seeded, str], browser: WebDriver) -> None:
    seeded, url = served
    browser.get(url)
    _wait_rendered(browser)
    text = _text(browser)
    for name in ("dist", "vanilla"):
        metrics = json.loads((seeded.runs[name] / "model_card.json").read_text())["metrics"]["test"]
        for value in (metrics["overall"]["mae"], metrics["few"]["mae"], metrics["bmae"], metrics["few"]["gm"]):
            assert f"{value:.3f}" in text
    assert "dist-seed2 (champion)" in text and "vanilla-seed1 (challenger)" in text


def _click_button(driver: WebDriver, label: str) -> None:
    button = next(b for b in driver.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == label)
    button.click()


@pytest.mark.slow
def test_a_review_submitted_in_the_browser_is_stored(served: tuple[Seeded, str], browser: WebDriver,
                                                    shots: Path) -> None:
    seeded, url = served
    with session_scope(seeded.database_url) as session:
        labs_before = set(session.scalars(sa.select(LabConfirmation.id)))
    browser.get(f"{url}/review_queue")
    _wait_rendered(browser)
    browser.find_element(By.CSS_SELECTOR, 'section[data-testid="stSidebar"] input[type="password"]').send_keys(
        seeded.keys["reviewer"])
    _click_button(browser, "Sign in")
    WebDriverWait(browser, WAIT_S).until(lambda d: "Signed in as test reviewer" in d.page_source)
    _wait_rendered(browser)

    lab = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Lab K⁺ (mmol/L)"]')
    lab.send_keys("6.2")
    next(label for label in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stRadio"] label')
         if label.text.startswith("disagree")).click()
    comment = browser.find_element(By.CSS_SELECTOR, 'textarea[aria-label="Comment (optional)"]')
    comment.send_keys("from the browser")
    _click_button(browser, "Submit review")
    WebDriverWait(browser, WAIT_S).until(lambda d: "Saved lab K⁺ 6.2 mmol/L" in d.page_source)
    _wait_rendered(browser)
    saved = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"] [data-testid="stAlert"]').text
    assert saved.startswith("Saved lab K⁺ 6.2 mmol/L and verdict 'disagree' for prediction ")
    chosen = saved.rstrip(".").split()[-1]
    _screenshot(browser, shots, "review_submitted")

    with session_scope(seeded.database_url) as session:
        labs = session.scalars(sa.select(LabConfirmation).where(LabConfirmation.id.not_in(labs_before))).all()
        assert [(lab.k_value, lab.confirmed_by) for lab in labs] == [(6.2, seeded.key_ids["reviewer"])]
        assert str(labs[0].prediction_id).startswith(chosen)
        prediction_id: uuid.UUID = labs[0].prediction_id
        review = session.scalars(sa.select(Review).where(Review.prediction_id == prediction_id)).one()
        assert (review.verdict, review.comment, review.reviewer_id) == (Verdict.DISAGREE, "from the browser",
                                                                       seeded.key_ids["reviewer"])
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.resource == f"prediction:{prediction_id}")
                                 .order_by(AuditEvent.id)).all()
    actor = f"api_key:{seeded.key_ids['reviewer']}"
    assert [(e.action, e.actor) for e in events if e.action != "prediction.read"] == [
        ("lab.confirm", actor), ("review.add", actor), ("review.submit", actor)]
    assert len({e.request_id for e in events if e.action != "prediction.read"}) == 1
