"""The results site in a real browser: Debian's chromium, headless, driven by Selenium through Debian's
chromedriver (nothing downloaded), after the real campaign of tests/test_archive_campaign.py (one campaign
for both: its real runs take minutes); on a failure the steps save a screenshot in the temporary
directory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from sqlalchemy.orm import Session, sessionmaker

from activities.storage.store import ArtifactStore
from models.campaign import RunResult
from support.site_data import Target, store_campaign
from support.site_server import serving
from tests.local_campaign import LocalCampaign
from web.app import create_app
from worker.context import Context
from worker.settings import Settings

XSS = "<script>alert(1)</script>"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def no_alert(driver: WebDriver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 — the property raises when no alert is open


def browse(
    driver: WebDriver, base: str, run: LocalCampaign, xss_campaign: str, xss_source: str, suite: str
) -> None:
    driver.get(base + "/")
    driver.find_element(By.LINK_TEXT, run.campaign_id).click()
    assert run.campaign_id in driver.title
    # The trigger from Temporal's visibility, its suite version from the suite: both versions compared.
    assert (
        "hello-debflow 1.0 (in the suite, the baseline) → 1.1 (new)"
        in driver.find_element(By.TAG_NAME, "main").text
    )
    row = driver.find_element(By.ID, "greeter-debflow_amd64")
    assert "row-REGRESSION" in (row.get_attribute("class") or "")
    assert "relays-greeting" in row.text and "confirmed by a re-run" in row.text
    campaign_url = driver.current_url
    row.find_element(By.LINK_TEXT, "new log").click()
    assert "Howdy from debflow" in driver.find_element(By.TAG_NAME, "body").text  # hello-debflow 1.1
    driver.get(campaign_url)
    driver.find_element(By.ID, "greeter-debflow_amd64").find_element(By.LINK_TEXT, "baseline log").click()
    baseline = driver.find_element(By.TAG_NAME, "body").text
    assert "Hello from debflow" in baseline and "Howdy" not in baseline  # hello-debflow 1.0

    driver.get(base + "/status")
    chart = driver.find_element(By.CSS_SELECTOR, "svg.chart")
    assert chart.size["width"] > 100 and chart.find_elements(By.CSS_SELECTOR, "rect.pass, rect.fail")

    for path in (f"/campaigns/{xss_campaign}", f"/packages/{xss_source}/{suite}/amd64"):
        driver.get(base + path)
        no_alert(driver)
        assert XSS in driver.find_element(By.TAG_NAME, "body").text  # shown as text
    driver.get(base + f"/campaigns/{xss_campaign}")
    driver.find_element(By.ID, f"{xss_source}_amd64").find_element(By.LINK_TEXT, "new log").click()
    no_alert(driver)
    assert XSS in driver.find_element(By.TAG_NAME, "body").text


async def follow_the_regression(
    browser: WebDriver,
    settings: Settings,
    sessions: sessionmaker[Session],
    store: ArtifactStore,
    run: LocalCampaign,
    tmp_path: Path,
) -> None:
    """What a maintainer follows in the browser after a real campaign that confirmed greeter-debflow's
    regression (tests/test_archive_campaign.py): home, campaign, both logs, the status chart, and a
    campaign whose package-controlled text is a script, shown as text."""
    xss_source, xss_campaign = f"xss-{uuid.uuid4().hex[:8]}", f"campaign-xss_1-{uuid.uuid4().hex[:8]}"
    store_campaign(
        store,
        sessions,
        campaign_id=xss_campaign,
        suite=run.suite,
        architecture="amd64",
        targets=[
            Target(
                xss_source,
                "1.0",
                RunResult.FAIL,
                RunResult.PASS,
                new_tests={XSS: "FAIL"},
                reference_tests={XSS: "PASS"},
                new_log=f"{XSS}\n",
            )
        ],
    )
    context = Context(settings, pool_size=4)
    try:
        with serving(create_app(context)) as base:
            try:
                await asyncio.to_thread(browse, browser, base, run, xss_campaign, xss_source, run.suite)
            except BaseException:
                browser.save_screenshot(str(tmp_path / "failure.png"))
                print(f"screenshot: {tmp_path / 'failure.png'}")
                raise
    finally:
        context.close()
