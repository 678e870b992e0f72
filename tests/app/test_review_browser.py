"""The teachers' review page (/review) end to end: a real headless Chromium (Debian's chromium and
chromium-driver; .ci/run installs them) drives the page against a real uvicorn serving the tiny items.

Set REVIEW_SCREENSHOT=docs/img/review.png to save the page with results and an open evidence panel.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from app.security import key_digest
from tests.conftest import REPO, Server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
KEY = "review-page-test-key"
ITEM = "item-a"
# Georgian is outside MiniLM's vocabulary (every word [UNK]): these answers are flagged `unknown_words`
# whatever the model says, so with SCORER_REVIEW_THRESHOLD=0 the set has flagged and unflagged rows for certain.
UNREADABLE = "მჟავა წვიმა ქვას ხსნის"
CLASS_SET = [
    ("s01", "acid rain reacts with limestone and marble"),
    ("s02", "the mass went down"),
    ("s03", UNREADABLE),
    ("s04", 'vinegar, "acid", changed the mass\nof the samples'),  # delimiter, quotes, line break
    ("s05", "i do not know"),
    ("s06", "ქვა " + UNREADABLE),
    ("s07", "the rain makes the statue dissolve because of acid"),
]


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver; "
                    ".ci/run does it)")


def _serve(artifacts: Path, env: dict[str, str], log: Path) -> Iterator[Server]:
    server = Server({"SCORER_ARTIFACTS": str(artifacts), **env}, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No keys (loopback only), and only unreadable answers flagged (see UNREADABLE)."""
    yield from _serve(tiny_artifacts, {"SCORER_REVIEW_THRESHOLD": "0"},
                      tmp_path_factory.mktemp("review") / "server.log")


@pytest.fixture(scope="module")
def keyed_server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tiny_artifacts, {"SCORER_API_KEYS_SHA256": json.dumps([key_digest(KEY)])},
                      tmp_path_factory.mktemp("review-keyed") / "server.log")


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              "download.directory_upgrade": True})
    # An explicit chromedriver: Selenium Manager (which downloads drivers) is never asked.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def open_page(driver: WebDriver, server: Server, query: str = "") -> None:
    driver.get(f"{server.url}/review{query}")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{server.url}/review{query}")


def wait_items(driver: WebDriver) -> None:
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'#item option[value="{ITEM}"]'))
    Select(driver.find_element(By.ID, "item")).select_by_value(ITEM)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "answer"])
        writer.writerows(rows)
    return path


def score_file(driver: WebDriver, path: Path, rows: int, timeout: float = 60) -> None:
    driver.find_element(By.ID, "answers-file").send_keys(str(path))
    driver.find_element(By.ID, "score-button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "summary").text.startswith(f"{rows} answers"), timeout)


def table_rows(driver: WebDriver) -> list[dict[str, str]]:
    """The results table as the page shows it, top to bottom (one script call, not one per cell)."""
    rows: list[dict[str, str]] = driver.execute_script("""
        return [...document.querySelectorAll('#results-body tr')].map((tr) => ({
            id: tr.querySelector('.open-row').textContent.replace('Open row ', ''),
            flagged: tr.dataset.flagged, score: tr.cells[2].textContent, review: tr.cells[4].textContent}));""")
    return rows


def batch(server: Server, rows: list[tuple[str, str]], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    body = {"answers": [{"id": key, "item_id": ITEM, "answer": text} for key, text in rows], "explain": True}
    response = httpx.post(server.url + "/batch", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def expected_order(results: list[dict[str, Any]]) -> list[str]:
    """Failed rows, flagged rows least confident first, then the rest as given (the page's order)."""
    def rank(position: int) -> tuple[int, float, int]:
        row = results[position]
        group = 0 if row["error"] else 1 if row["needs_review"] else 2
        return group, row["confidence"] if group == 1 else 0.0, position
    return [str(results[position]["id"]) for position in sorted(range(len(results)), key=rank)]


@pytest.fixture(scope="module")
def class_set(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    path = write_csv(tmp_path_factory.mktemp("class") / "class.csv", CLASS_SET)
    return path, batch(server, CLASS_SET)


def test_page_and_assets_are_local(server: Server) -> None:
    page = httpx.get(server.url + "/review", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("review.js", "review.css"):
        response = httpx.get(f"{server.url}/static/review/{asset}", timeout=30)
        assert response.status_code == 200 and len(response.content) > 1000, asset


def test_upload_shows_scores_with_flagged_rows_first(browser: WebDriver, server: Server,
                                                     class_set: tuple[Path, list[dict[str, Any]]]) -> None:
    path, results = class_set
    assert {row["needs_review"] for row in results} == {True, False}, results  # both kinds, or nothing is sorted
    open_page(browser, server)
    wait_items(browser)
    score_file(browser, path, len(CLASS_SET))
    shown = table_rows(browser)
    assert [row["id"] for row in shown] == expected_order(results)
    flags = [row["flagged"] for row in shown]
    assert flags == sorted(flags, key=lambda flag: flag != "yes")  # every flagged row above every other
    by_id = {str(row["id"]): row for row in results}
    for row in shown:
        assert row["score"] == str(by_id[row["id"]]["score"])
        reasons = by_id[row["id"]]["review_reasons"]
        assert row["review"] == (", ".join(reason.replace("_", " ") for reason in reasons) or "–")
    assert any("unknown_words" in row["review_reasons"] for row in results)
    assert "flagged for review" in browser.find_element(By.ID, "status").text


def test_evidence_panel(browser: WebDriver, server: Server, class_set: tuple[Path, list[dict[str, Any]]]) -> None:
    path, results = class_set
    open_page(browser, server)
    wait_items(browser)
    score_file(browser, path, len(CLASS_SET))
    first = browser.find_element(By.CSS_SELECTOR, "#results-body .open-row")
    first.send_keys(Keys.ENTER)  # a real button: Enter opens it
    detail = browser.find_element(By.ID, "detail")
    wait_for(browser, lambda d: detail.is_displayed())
    row_id = table_rows(browser)[0]["id"]
    assert browser.find_element(By.ID, "detail-heading").text == f"Row {row_id}"
    assert browser.switch_to.active_element.get_attribute("id") == "detail-heading"
    reopened = browser.find_element(By.CSS_SELECTOR, '#results-body .open-row[aria-expanded="true"]')
    assert row_id in reopened.text
    evidence_text = browser.find_element(By.ID, "evidence").text
    items = {item["item_id"]: item for item in httpx.get(server.url + "/items", timeout=30).json()}
    result = next(row for row in results if str(row["id"]) == row_id)
    if not items[ITEM].get("evidence"):
        assert "no evidence index" in evidence_text
    else:
        evidence = result["evidence"]
        assert evidence, result
        cells = browser.execute_script("""return [...document.querySelectorAll('#evidence table')][0]
            .querySelectorAll('tbody tr').length""")
        assert cells == len(evidence["neighbours"])
        for neighbour in evidence["neighbours"]:
            assert str(neighbour["id"]) in evidence_text
        assert f"score {evidence['neighbour_score']}" in evidence_text
    if os.environ.get("REVIEW_SCREENSHOT"):
        target = REPO / os.environ["REVIEW_SCREENSHOT"]
        target.parent.mkdir(parents=True, exist_ok=True)
        browser.set_window_size(1280, 1250)
        browser.execute_script("window.scrollTo(0, document.getElementById('results').offsetTop - 10)")
        browser.save_screenshot(str(target))
        browser.set_window_size(1280, 1000)
    # Escape closes the panel and puts the focus back on the row's button.
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_for(browser, lambda d: not detail.is_displayed())
    assert row_id in browser.switch_to.active_element.text


def wait_download(folder: Path, timeout: float = 30) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = list(folder.glob("*.csv"))
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.1)
    raise TimeoutError(f"no CSV in {folder}: {list(folder.iterdir())}")


def test_keyboard_correction_and_download(browser: WebDriver, server: Server, downloads: Path,
                                          class_set: tuple[Path, list[dict[str, Any]]]) -> None:
    path, results = class_set
    for old in downloads.iterdir():
        old.unlink()
    open_page(browser, server)
    wait_items(browser)
    score_file(browser, path, len(CLASS_SET))
    target = results[1]  # s02, whichever place it has in the table
    corrected = (target["score"] + 1) % 3
    button = browser.find_element(By.XPATH, f'//tbody[@id="results-body"]//button[contains(., "{target["id"]}")]')
    button.send_keys(Keys.ENTER)
    # Keyboard only: from the panel's heading, Tab to the score, type it, Tab to Save, Enter.
    heading = wait_for(browser, lambda d: d.find_element(By.ID, "detail-heading")
                       if d.switch_to.active_element.get_attribute("id") == "detail-heading" else None)
    heading.send_keys(Keys.TAB)
    score_select = browser.switch_to.active_element
    assert score_select.get_attribute("id") == "correct-score"
    score_select.send_keys(str(corrected))
    assert Select(score_select).first_selected_option.text == str(corrected)
    score_select.send_keys(Keys.TAB)
    save = browser.switch_to.active_element
    assert save.get_attribute("id") == "correct-save"
    save.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: "replaces the model" in d.find_element(By.ID, "status").text)
    row = next(row for row in table_rows(browser) if row["id"] == target["id"])
    assert row["score"] == f"{corrected} (model {target['score']})"

    download = browser.find_element(By.ID, "download")
    download.send_keys(Keys.ENTER)
    saved = wait_download(downloads)
    with saved.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["id", "item_id", "answer", "score", "model_score", "corrected", "confidence",
                                     "needs_review", "review_reasons"]
        rows = list(reader)
    assert [row["id"] for row in rows] == [key for key, _ in CLASS_SET]  # the order given, not the review order
    for row, (key, text), result in zip(rows, CLASS_SET, results, strict=True):
        fixed = corrected if key == target["id"] else None
        assert row == {"id": key, "item_id": ITEM, "answer": text,
                       "score": str(fixed if fixed is not None else result["score"]),
                       "model_score": str(result["score"]), "corrected": "yes" if fixed is not None else "no",
                       "confidence": row["confidence"], "needs_review": "yes" if result["needs_review"] else "no",
                       "review_reasons": ";".join(result["review_reasons"])}
        assert float(row["confidence"]) == pytest.approx(result["confidence"], abs=1e-9)

    # Ready for `scorer add-item`: its own reader takes the file as it is.
    from training.data import read_scored_table

    table = read_scored_table(saved)
    assert [(text, score) for _, text, score, _ in table[ITEM]] == [(row["answer"], int(row["score"])) for row in rows]


def test_unscored_row_shown_first_and_left_out_of_csv(browser: WebDriver, server: Server, downloads: Path,
                                                      tmp_path: Path) -> None:
    for old in downloads.iterdir():
        old.unlink()
    rows = [("ok", "the mass went down"), ("blank", "   ")]  # the service refuses an empty answer
    open_page(browser, server)
    wait_items(browser)
    score_file(browser, write_csv(tmp_path / "blank.csv", rows), 2)
    shown = table_rows(browser)
    assert [row["id"] for row in shown] == ["blank", "ok"]
    assert shown[0]["flagged"] == "error" and shown[0]["review"] == "error: answer is empty"
    browser.find_element(By.CSS_SELECTOR, "#results-body .open-row").send_keys(Keys.ENTER)
    wait_for(browser, lambda d: "not scored" in d.find_element(By.ID, "evidence").text)
    browser.find_element(By.ID, "download").click()
    with wait_download(downloads).open(encoding="utf-8-sig", newline="") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == ["ok"]
    assert "1 row without a score or text left out" in browser.find_element(By.ID, "status").text


def test_api_key_required(browser: WebDriver, keyed_server: Server, tmp_path: Path) -> None:
    open_page(browser, keyed_server)
    error = wait_for(browser, lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").is_displayed()
                     else None)
    assert "401" in error.text and "API key" in error.text
    assert error.get_attribute("role") == "alert"
    key = browser.find_element(By.ID, "api-key")
    key.send_keys(KEY)
    key.send_keys(Keys.ENTER)  # submits the key form
    wait_items(browser)
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('scorer.review.apiKey')") == KEY
    rows = [("a", "the mass went down"), ("b", "idk")]
    score_file(browser, write_csv(tmp_path / "two.csv", rows), 2)
    expected = batch(keyed_server, rows, headers={"Authorization": f"Bearer {KEY}"})
    shown = {row["id"]: row["score"] for row in table_rows(browser)}
    assert shown == {str(row["id"]): str(row["score"]) for row in expected}


def test_large_set_runs_as_job_with_progress(browser: WebDriver, server: Server, tmp_path: Path) -> None:
    rows = [(f"r{n}", f"the rain makes the statue dissolve {n}") for n in range(250)]  # above the 200 threshold
    open_page(browser, server)
    wait_items(browser)
    # Every text the progress line shows, recorded as it changes (a job of tiny items can finish in one poll).
    browser.execute_script("""
        const line = document.getElementById('progress-text');
        window.__progress = [];
        new MutationObserver(() => window.__progress.push(line.textContent))
            .observe(line, {childList: true, characterData: true, subtree: true});""")
    score_file(browser, write_csv(tmp_path / "large.csv", rows), 250, timeout=120)
    progress: list[str] = browser.execute_script("return window.__progress")
    assert progress and all("of 250 answers" in text for text in progress), progress
    assert "0 of 250" in progress[0] and "(done): 250 of 250" in progress[-1], progress
    assert browser.find_element(By.ID, "progress-box").is_displayed()
    assert "background job" in browser.find_element(By.ID, "status").text
    assert len(table_rows(browser)) == 250


def test_job_threshold_from_query(browser: WebDriver, server: Server, tmp_path: Path) -> None:
    open_page(browser, server, "?job_threshold=2")
    wait_items(browser)
    score_file(browser, write_csv(tmp_path / "three.csv", CLASS_SET[:3]), 3)
    assert "background job" in browser.find_element(By.ID, "status").text
    assert "3 of 3" in browser.find_element(By.ID, "progress-text").text


def test_no_answer_text_in_server_log(server: Server) -> None:
    log = server.log_path.read_text(errors="replace")
    assert "limestone" not in log and "statue dissolve" not in log

