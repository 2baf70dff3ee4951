"""The HTML viewer in a real browser (Debian's headless Chromium through Selenium), loaded from disk (file://) after a
run against the fake OpenAI-compatible server over loopback.

Needs /usr/bin/chromium and /usr/bin/chromedriver (scripts/install_browser.sh installs them). Without them the tests
skip with a one-line reason, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import run_cli, write_config, write_questions

from evalsuite.store import RunStore
from evalsuite.testing.fake_server import FakeOpenAIServer, FaultPlan

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
STRENGTHS = {"sft": 0.0, "dpo": 1.0, "simpo": -0.5}
PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"></div><b>bold?</b>'
INJECTED = ("dpo", "q001", 1)  # the answer turn overwritten with PAYLOAD


def _require_browser() -> Any:
    """Selenium's webdriver module, or skip (fail under CI=true) with a one-line reason."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
        webdriver = None
    if missing:
        reason = f"browser tests need {', '.join(missing)}: run scripts/install_browser.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return webdriver


def chrome_options(webdriver: Any, profile: str, *, width: int = 1400, height: int = 1000) -> Any:
    """Headless Chromium with a fresh profile and every background network feature off."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors (CSP violations too) become readable
    return opts


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    webdriver = _require_browser()
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="evalsuite-chromium-")
    # an explicit driver path: Selenium never tries to download one
    drv = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=chrome_options(webdriver, profile))
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A compare run against the fake server (some judge replies carry no verdict), one answer replaced by PAYLOAD,
    and its viewer."""
    _require_browser()  # no server run when the browser is missing
    tmp = tmp_path_factory.mktemp("viewer")
    questions = write_questions(tmp / "questions.jsonl", n=16)
    with FakeOpenAIServer(strengths=STRENGTHS, faults=FaultPlan(rate_no_verdict=0.08)) as srv:
        cfg = write_config(tmp / "evalsuite.toml", srv.base_url, STRENGTHS, questions)
        res = run_cli("compare", "sft", "dpo", "simpo", "--config", str(cfg), "--run-dir", "run", "--quiet",
                      "--resamples", "500", "--bt-rounds", "50", cwd=tmp)
        assert res.returncode == 0, res.stderr
    model, qid, turn = INJECTED
    with RunStore(tmp / "run") as store:
        store.put_answer_turn(model=model, question_id=qid, turn=turn, text="Answer: " + PAYLOAD, cache_key="test",
                              backend="test", settings={})
    res = run_cli("view", "--run-dir", "run", cwd=tmp)
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp / "run" / "results.json").read_text(encoding="utf-8"))
    return {"page": tmp / "run" / "viewer.html", "results": results}


def _load(driver: Any, page: Path, fragment: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")  # a new document even when only the fragment changes
    driver.get(page.as_uri() + fragment)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return window.__viewerReady !== undefined"))


def _count(driver: Any) -> int:
    return int(driver.find_element("id", "match-count").get_attribute("data-count"))


def _rows(driver: Any) -> list[Any]:
    return driver.find_elements("css selector", "#matches > details.match")


def test_every_match_is_listed_and_the_leaderboard_comes_first(driver: Any, run: dict[str, Any]) -> None:
    _load(driver, run["page"])
    comps = run["results"]["comparisons"]
    n_matches = sum(c["n"] + c["errors"] for c in comps)
    assert n_matches == 2 * 16 * 2
    assert _count(driver) == n_matches == len(_rows(driver))
    assert driver.execute_script("return document.getElementById('match-count').textContent") == f"{n_matches} of {n_matches} matches"
    board = driver.find_element("id", "leaderboard")
    assert board.location["y"] < driver.find_element("id", "matches").location["y"]
    for c in comps:
        assert f"{100 * c['win_rate']:.1f}%" in board.text
    assert len(driver.find_elements("css selector", ".plots img")) >= 1  # inline plots (matplotlib is in [dev])
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe  # no JS error, no CSP violation, nothing fetched


def test_filters_count_what_the_results_count(driver: Any, run: dict[str, Any]) -> None:
    _load(driver, run["page"])
    comps = {c["model"]: c for c in run["results"]["comparisons"]}
    driver.find_element("id", "f-inconsistent").click()
    n_inc = sum(c["inconsistent"] for c in comps.values())
    assert n_inc > 0
    assert _count(driver) == n_inc == len(_rows(driver))
    assert all("inconsistent" in r.find_element("tag name", "summary").text for r in _rows(driver))
    driver.find_element("id", "f-inconsistent").click()
    driver.find_element("id", "f-errors").click()
    n_err = sum(c["errors"] for c in comps.values())
    assert n_err > 0 and _count(driver) == n_err
    driver.find_element("id", "f-errors").click()
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "f-candidate")).select_by_value("dpo")
    Select(driver.find_element("id", "f-result")).select_by_value("loss")
    assert _count(driver) == comps["dpo"]["losses"]
    Select(driver.find_element("id", "f-result")).select_by_value("")
    Select(driver.find_element("id", "f-turn")).select_by_value("2")
    Select(driver.find_element("id", "f-category")).select_by_value("math")
    assert _count(driver) == 4  # 16 questions: 4 math, one turn, one candidate
    # inconsistent matches and losses are listed first
    Select(driver.find_element("id", "f-turn")).select_by_value("")
    Select(driver.find_element("id", "f-category")).select_by_value("")
    Select(driver.find_element("id", "f-candidate")).select_by_value("")
    badges = [r.find_element("tag name", "summary").text for r in _rows(driver)]
    first_other = next(i for i, b in enumerate(badges) if "inconsistent" not in b)
    assert all("inconsistent" not in b for b in badges[first_other:])
    assert "loss" in badges[first_other]


def test_a_link_opens_its_match_even_when_filtered_out(driver: Any, run: dict[str, Any]) -> None:
    _load(driver, run["page"])
    target = _rows(driver)[-1].get_attribute("id")  # the last listed: a win, never inconsistent
    assert target.startswith("q") and "-t" in target
    driver.find_element("id", "f-inconsistent").click()  # hide it
    assert target not in [r.get_attribute("id") for r in _rows(driver)]
    driver.execute_script("location.hash = arguments[0]", target)
    node = driver.find_element("id", target)
    assert node.get_attribute("open") is not None
    assert "Parsed verdict" in node.text and "Order 2" in node.text and "Reconciled" in node.text
    # and a fresh load with the fragment opens it too, scrolled into view
    _load(driver, run["page"], "#" + target)
    node = driver.find_element("id", target)
    assert node.get_attribute("open") is not None
    top = driver.execute_script("return arguments[0].getBoundingClientRect().top", node)
    assert 0 <= top < driver.execute_script("return window.innerHeight")


def test_model_text_shows_as_text_and_runs_nothing(driver: Any, run: dict[str, Any]) -> None:
    model, qid, turn = INJECTED
    match = f"{qid}-t{turn}-{model}"
    _load(driver, run["page"], "#" + match)
    node = driver.find_element("id", match)
    assert node.get_attribute("open") is not None
    assert driver.execute_script("return window.__pwned") is None
    assert "Answer: " + PAYLOAD in node.text  # visible, verbatim
    assert driver.execute_script("return document.scripts.length") == 2  # the data block and the viewer's code
    assert not node.find_elements("tag name", "img") and not node.find_elements("tag name", "b")
    # the stray </div> closed nothing: the answer box still sits inside the match
    boxes = node.find_elements("css selector", ".grid2 .box")
    assert len(boxes) == 4 and PAYLOAD in boxes[0].text
