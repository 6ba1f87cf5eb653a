"""What a user sees of a sweep in MLflow's web UI, read from the page a real headless Chromium renders
(`mlflow server` on 127.0.0.1, the store a tiny sweep was logged to the way ddorch logs one)."""

import importlib.util
import re

import pytest

from orchestrator.store.tracking import TRAINING_VIEW, ui_address
from tests.ui_browser import EXPANDER, Browser, chromium, log_tiny_sweep, mlflow_ui

pytestmark = pytest.mark.integration

LOADED_IMAGES = "[...document.images].filter(i => i.src.includes('get-artifact') && i.naturalWidth > 0).length"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """(browser, server URL, store URI, experiment id, run ids by role, {run id: name})."""
    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if importlib.util.find_spec("mlflow.server") is None:
        pytest.skip("mlflow's server is not installed (mlflow-skinny has none)")
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    ids = log_tiny_sweep(uri, folder)
    client = MlflowClient(uri)
    experiment = client.get_run(ids["parent"]).info.experiment_id
    names = {run.info.run_id: run.info.run_name for run in client.search_runs([experiment])}
    with mlflow_ui(uri, folder) as url:
        if url is None:
            pytest.skip(f"mlflow server did not start: {(folder / 'server.log').read_text()[-500:]}")
        browser = Browser(chromium())
        try:
            yield browser, url, uri, experiment, ids, names
        finally:
            browser.close()


def test_the_experiment_opens_on_its_runs_named_and_nested(ui):
    browser, url, uri, experiment, ids, names = ui
    page = browser.open(ui_address(uri, url), names[ids["parent"]])  # the address `ddorch ui` prints
    assert browser.evaluate("document.title").startswith("Runs - ")  # the training view, not GenAI's Overview
    assert "Observability" not in page and "Token Usage" not in page
    assert browser.click(EXPANDER) == 1  # the sweep's trials are nested under it
    page = browser.wait_for(names[ids["stopped"]], timeout_s=10)
    assert all(name in page for name in names.values()) and "trainable_" not in page
    assert re.search(r"\b4 matching runs", page)


def test_a_trial_stopped_early_reads_as_finished_with_its_metric_and_images(ui):
    browser, url, uri, experiment, ids, names = ui
    run = f"{url}/#/experiments/{experiment}/runs/{ids['stopped']}"
    page = browser.open(f"{run}?{TRAINING_VIEW}", "ddorch.stopped_early")
    assert names[ids["stopped"]] in page and re.search(r"Status\s+Finished", page)
    assert "Killed" not in page and "Failed" not in page
    assert re.search(r"ddorch\.stopped_at_iteration\s*:\s*20", page) and "eval_accuracy" in page
    page = browser.open(f"{run}/model-metrics?{TRAINING_VIEW}", "synthetic_set")
    assert "eval_accuracy" in page
    # The image card starts at step 0; ddorch logs grids from the first evaluation on: move to the last step.
    browser.click_at(":has(> span > [role=slider])", 0.99)
    assert browser.wait_until(LOADED_IMAGES, timeout_s=10) >= 1
