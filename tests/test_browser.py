"""The search page in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver (never Selenium Manager, which would download a browser). Skipped only
when chromium is not installed; .ci/run installs it."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
    pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from test_server import built_index, folder, live, server_config  # noqa: E402,F401 - fixtures


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--window-size=1100,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _search(browser, url: str, query: str):
    browser.get(url + "/")
    # Without a key /stats answers 401, and the page opens its key box.
    box = WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.ID, "api-key")))
    box.send_keys("read-secret", Keys.TAB)   # change event: kept for the tab
    WebDriverWait(browser, 30).until(EC.text_to_be_present_in_element((By.ID, "index-info"), "documents"))
    field = browser.find_element(By.ID, "q")
    field.clear()
    field.send_keys(query, Keys.ENTER)
    WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#results .hit")))
    return browser.find_elements(By.CSS_SELECTOR, "#results .hit")


def test_query_shows_the_expected_document_first_with_its_passage_highlighted(live, browser, tmp_path):  # noqa: F811
    hits = _search(browser, live, "lava eruption volcano")
    first = hits[0]
    assert first.find_element(By.CSS_SELECTOR, ".path").text.endswith("volcano.txt")
    assert first.find_element(By.CSS_SELECTOR, ".rank").text == "1."
    marks = [m.text.lower() for m in first.find_elements(By.CSS_SELECTOR, ".passage mark")]
    assert "lava" in marks and any(m.startswith("volcano") for m in marks)
    browser.save_screenshot(str(tmp_path / "results.png"))
    # Keyboard: Tab from the search box reaches the results; Enter opens the document.
    first.find_element(By.CSS_SELECTOR, ".hit-open").send_keys(Keys.ENTER)
    WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.ID, "document")))
    assert "Vesuvius" in browser.find_element(By.ID, "doc-text").text
    assert browser.find_elements(By.CSS_SELECTOR, "#doc-text mark.passage-mark")
    browser.save_screenshot(str(tmp_path / "document.png"))
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not browser.find_element(By.ID, "document").is_displayed()


def test_a_script_in_a_document_renders_as_text(live, browser, tmp_path):  # noqa: F811
    hits = _search(browser, live, "pirate treasure map")
    first = hits[0]
    assert first.find_element(By.CSS_SELECTOR, ".hit-open").text == \
        "<img src=x onerror=alert(2)> Pirate notes"
    assert "<script>alert(1)</script>" in first.find_element(By.CSS_SELECTOR, ".passage").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#results script, #results img")
    first.find_element(By.CSS_SELECTOR, ".hit-open").click()
    WebDriverWait(browser, 30).until(EC.visibility_of_element_located((By.ID, "document")))
    assert "<script>alert(1)</script>" in browser.find_element(By.ID, "doc-text").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#document script, #document img")
    # An alert would be open now had any markup run.
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1
    browser.save_screenshot(str(tmp_path / "hostile.png"))
    assert (tmp_path / "hostile.png").stat().st_size > 10_000
