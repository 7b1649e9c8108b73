"""The address a sweep prints, opened in a real headless browser on a real `mlflow server`: the runs view.

MLflow 3's UI opens an experiment on its GenAI overview (traces), where none of the suite's runs shows.
Debian's chromium, driven by Playwright for Python (Playwright's own browser download needs the network).
"""

import os
import re
from pathlib import Path

import pytest

from .conftest import run_cli

CHROMIUM = Path("/usr/bin/chromium")
QUIET = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
QUIET += ["--disable-component-update", "--disable-sync", "--no-first-run"]  # nothing leaves the machine


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs it (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is missing (sudo apt-get install -y chromium); scripts/test.sh installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=QUIET)
        yield chromium
        chromium.close()


def test_the_sweep_address_opens_the_runs_view_with_the_sweep(mlflow_server, browser, tmp_path):
    sweep = ("-m", "lr=0.1", "epochs=1", "data.limit=1000")  # a sweep of one job: its parent and its child
    result = run_cli(tmp_path, *sweep, f"tracking.uri={mlflow_server}", "tracking.experiment=browser")
    assert result.returncode == 0, result.stdout + result.stderr
    url = re.search(r"sweep's runs: (\S+)", result.stdout).group(1)
    assert url.startswith(f"{mlflow_server}/#/experiments/") and url.endswith("/runs?workflowType=machine_learning")
    sweep_name = "lr=0.1 epochs=1 data.limit=1000"

    page = browser.new_page()
    page.goto(url)
    page.get_by_text(sweep_name, exact=True).first.wait_for(timeout=60_000)  # the sweep's parent run, listed
    assert "/runs" in page.url and "workflowType=machine_learning" in page.url  # still the runs view
    page.close()
