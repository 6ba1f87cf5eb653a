"""Screenshots of a sweep in MLflow's web UI for the README: the runs list, a trial's metrics and its
synthetic-set images. A tiny sweep (no training: logged the way ddorch logs one) in a temporary store,
`mlflow server` on 127.0.0.1 and headless Chromium (tests/ui_browser.py).

    PYTHONPATH=$PWD python benchmarks/ui_screenshots.py   # writes benchmarks/figures/ui_*.png
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.store.tracking import TRAINING_VIEW, ui_address  # noqa: E402
from tests.ui_browser import EXPANDER, Browser, chromium, log_tiny_sweep, mlflow_ui  # noqa: E402

FIGURES = ROOT / "benchmarks" / "figures"
CLOSE_ASSISTANT = 'button[data-component-id="mlflow.assistant.chat_panel.close"]'
IMAGE_CARD = "synthetic-set-card"  # an id given to the image chart's card, to photograph it alone
MARK_IMAGE_CARD = f"""(() => {{
  const title = [...document.querySelectorAll('*')].find(e => e.children.length === 0 && e.textContent === 'synthetic_set');
  let card = title;
  while (card && card.getBoundingClientRect().height < 300) card = card.parentElement;
  card.id = '{IMAGE_CARD}';
  return true;
}})()"""
LOADED_IMAGES = "[...document.images].filter(i => i.src.includes('get-artifact') && i.naturalWidth > 0).length"


def main() -> None:
    browser_binary = chromium()
    if browser_binary is None:
        sys.exit("chromium is not installed")
    FIGURES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        os.chdir(folder)  # the store's artefacts go next to it
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        ids = log_tiny_sweep(uri, folder)
        with mlflow_ui(uri, folder) as url:
            if url is None:
                sys.exit(f"mlflow server did not start: {(folder / 'server.log').read_text()[-500:]}")
            browser = Browser(browser_binary, width=1280, height=760)
            try:
                shoot(browser, uri, url, ids)
            finally:
                browser.close()


def shoot(browser: Browser, uri: str, url: str, ids: dict[str, str]) -> None:
    browser.open(ui_address(uri, url), "digits-datadam-sweep")
    browser.click(CLOSE_ASSISTANT)
    browser.click(EXPANDER)
    browser.wait_for("lr_images=0.05")
    print(browser.screenshot(FIGURES / "ui_runs.png"))
    run = f"{url}/#/experiments/1/runs/{ids['stopped']}/model-metrics?{TRAINING_VIEW}"
    browser.open(run, "synthetic_set")
    browser.click(CLOSE_ASSISTANT)
    browser.click_at(":has(> span > [role=slider])", 0.99)  # the image card starts at step 0: the last step
    browser.wait_until(LOADED_IMAGES)
    print(browser.screenshot(FIGURES / "ui_run_metrics.png"))
    browser.evaluate(MARK_IMAGE_CARD)
    print(browser.screenshot(FIGURES / "ui_run_images.png", f"#{IMAGE_CARD}", scale=2))


if __name__ == "__main__":
    main()
