"""Headless Chromium: the MLflow UI (``fsnas ui``) shows a study's pareto.html, also offline.

Debian's ``/usr/bin/chromium`` is driven by Playwright's Python package through
``executable_path`` (``.ci/setup_browser.sh`` installs it; never ``playwright install``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dashboards import plots
from dashboards.tracking import StudyTracker
from tests.dashboards import servers
from tests.dashboards.conftest import OBJECTIVES, build_study

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The MLflow UI renders slowly on a busy 2-core machine (20-30 s to list artifacts).
UI_TIMEOUT_MS = 120_000
STUDY = "browser-study"
# Set to a folder (e.g. docs/img) to keep the screenshot there as mlflow_pareto.png.
SCREENSHOT_DIR_ENV = "FSNAS_SCREENSHOT_DIR"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Debian Chromium; missing is a skip, or a failure under CI=true."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} not found (run .ci/setup_browser.sh)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(problem + " (required under CI=true)")
        pytest.skip(problem)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class LoggedStudy:
    url: str
    experiment_id: str
    parent_run_id: str
    ui_log: Path


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedStudy]:
    """A study logged to a SQLite store, served by ``fsnas ui`` on a free port."""
    root = tmp_path_factory.mktemp("fsnas-ui")
    store = f"sqlite:///{root / 'mlflow.db'}"
    study = build_study(n_trials=12, name=STUDY)
    tracker = StudyTracker(store, STUDY, study.summary.config, device="cpu")
    parent_run_id = tracker.start()
    for record in study.records:
        tracker.log_trial(record)
    assert tracker.finish(study.records, study.summary)
    assert tracker.experiment_id is not None

    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "nas.cli", "ui", "--tracking-uri", store, "--port", str(port)]
    log = root / "ui.log"
    process = servers.start(command, url, log)
    try:
        yield LoggedStudy(url, tracker.experiment_id, parent_run_id, log)
    finally:
        servers.stop(process)


def test_fsnas_ui_prints_its_url(ui: LoggedStudy) -> None:
    assert f"MLflow UI: {ui.url}" in ui.ui_log.read_text()


def test_mlflow_ui_run_page_renders_pareto_html(
    browser: Any, ui: LoggedStudy, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 950})
    run_url = f"{ui.url}/#/experiments/{ui.experiment_id}/runs/{ui.parent_run_id}/artifacts"
    page.goto(run_url)
    artifact = page.get_by_text("pareto.html", exact=True).first
    artifact.wait_for(timeout=UI_TIMEOUT_MS)
    # MLflow 3 opens in its GenAI view; training runs live under "Model training"
    page.get_by_text("Model training", exact=True).first.click()
    page.goto(run_url)
    artifact.wait_for(timeout=UI_TIMEOUT_MS)
    assistant_close = page.locator('button[aria-label="Close"]')
    if assistant_close.count():  # the assistant side panel hides half the plot
        assistant_close.first.click()
    artifact.click()

    plot = page.frame_locator("iframe").first
    plot.locator("svg.main-svg").first.wait_for(timeout=UI_TIMEOUT_MS)
    assert plot.locator("svg.main-svg").count() > 0
    # one scatter trace per group: front, dominated, pruned, out of memory, and the front line
    assert plot.locator("g.trace.scatter").count() >= 5
    assert plot.get_by_text("validation accuracy (higher is better)").count() == 1

    page.wait_for_timeout(500)  # let plotly finish its transition before the picture
    screenshot = tmp_path / "mlflow_pareto.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 20_000
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(keep) / screenshot.name)
    page.close()


def test_pareto_html_renders_with_the_network_off(browser: Any, tmp_path: Path) -> None:
    study = build_study(n_trials=12)
    accuracy, vram = OBJECTIVES
    html = plots.write_pareto_html(
        tmp_path / "pareto.html", study.records, OBJECTIVES, vram, accuracy, study_name="offline"
    )
    page = browser.new_page()
    network_requests: list[str] = []

    def only_files(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            network_requests.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    page.goto(html.as_uri())
    page.locator("svg.main-svg").first.wait_for(timeout=60_000)
    assert page.locator("svg.main-svg").count() > 0
    assert page.locator("g.trace.scatter").count() >= 5

    # hovering a front marker (a star) shows the trial's spec summary and costs; the mouse
    # goes to its position because plotly's drag layer lies on top of every marker
    box = page.locator("g.trace.scatter path.point[d*='L']").last.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    hover = page.locator("g.hoverlayer")
    hover.get_by_text("on Pareto front").first.wait_for(timeout=10_000)
    text = hover.text_content() or ""
    assert "params:" in text and "F[" in text, text
    assert network_requests == [], network_requests
    page.close()
