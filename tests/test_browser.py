"""JupyterLab in a real browser: `pulkit explore` copies of 05 and 06 (smoke) run in headless Chromium without
errors, their widgets render as widgets, a moved slider redraws the picture, and `pulkit reproduce` re-runs nothing
afterwards.  Runs alone (`make test-browser`, which sets RUN_BROWSER_TEST=1); needs Debian's chromium and
chromium-driver and the `test` extra's selenium."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pulkit.core import artifacts
from pulkit.core.config import load_config

ENABLE = "RUN_BROWSER_TEST"
pytestmark = pytest.mark.skipif(os.environ.get(ENABLE) != "1",
                                reason=f"the browser test runs alone: make test-browser (sets {ENABLE}=1)")
PROFILE = "smoke"
RUN_ALL_TIMEOUT_S = 420
REDRAW_TIMEOUT_S = 90
# A widget the browser could not render shows its text form (`VBox(children=...)`) or an error line instead.
AS_TEXT = re.compile(r"\b(VBox|HBox|IntSlider|FloatSlider|Image|Dropdown|interactive)\(|Error displaying widget"
                     r"|Loading widget|model not found")


# --------------------------------------------------------------------------- the run to explore
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The environment of every command: outputs, Jupyter state and JupyterLab settings in a temporary folder."""
    root = tmp_path_factory.mktemp("browser")
    out = {k: v for k, v in os.environ.items() if k != ENABLE}
    out.update({f"PULKIT_{k.upper()}": str(root / k) for k in ("results", "checkpoints", "runs", "figures")})
    out.update({"JUPYTER_RUNTIME_DIR": str(root / "jr"), "JUPYTERLAB_SETTINGS_DIR": str(root / "lab-settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(root / "lab-workspaces")})
    out.pop("PULKIT_RUN", None)
    return out


def pulkit(env, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pulkit", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def fabricate_trackers(env) -> None:
    """Untrained small AlexNets where notebook 06 looks for its trackers (01-03 would train them for minutes)."""
    import torch

    from pulkit.models.net import build_net, save_checkpoint

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULKIT_CHECKPOINTS", env["PULKIT_CHECKPOINTS"])
        mp.delenv("PULKIT_RUN", raising=False)
        rounds = load_config(PROFILE).tc.rounds
        for i, name in enumerate(artifacts.MAIN_TRACKERS):
            cfg = load_config(PROFILE, {"model": {"backbone": "alexnet", "exemplar_sz": 87, "instance_sz": 127},
                                        "tracker": {"response_up": 4, "device": "cpu"}}, seed=i)
            torch.manual_seed(i)
            save_checkpoint(artifacts.tracker_checkpoints(PROFILE, rounds)[name], build_net(cfg.model), cfg,
                            stage="browser test")


@pytest.fixture(scope="module")
def prepared(env):
    """05 and 06 run once by the runner (their state recorded), as a user's run would be before exploring."""
    fabricate_trackers(env)
    done = pulkit(env, "reproduce", "--profile", PROFILE, "--only", "05", "06")
    assert done.returncode == 0, f"preparing 05 and 06 failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return env


@pytest.fixture(scope="module")
def lab(prepared, tmp_path_factory):
    """`pulkit explore 05` serving JupyterLab (and the 06 copy beside it); yields the URL it printed."""
    env = dict(prepared)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env["LAB_ARGS"] = f"--no-browser --port={port} --ServerApp.port_retries=0 --LabApp.expose_app_in_browser=True"
    log = tmp_path_factory.mktemp("lab") / "lab.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pulkit", "explore", "05", "--profile", PROFILE], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            url = next((m.group(0) for line in list(lines) for m in [re.search(r"http://\S+", line)] if m), None)
            time.sleep(0.5)
        assert url, f"`pulkit explore 05` printed no URL; its output: {''.join(lines)}\n{log.read_text()[-3000:]}"
        assert "token=" in url and url.split("?")[0].endswith("/05_sectionB_taylor.ipynb"), url
        other = pulkit(env, "explore", "06", "--profile", PROFILE, "--no-lab")
        assert other.returncode == 0, other.stderr
        yield url, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)           # the launcher stops its server
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    assert chromium and driver, "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"):
        opts.add_argument(flag)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    yield b
    b.quit()


# --------------------------------------------------------------------------- the page
NOTEBOOK_JS = """
const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
if (!w || !w.context || !w.context.path.endsWith(arguments[0]) || !w.sessionContext.session
    || !w.sessionContext.session.kernel) return false;
return true;
"""

STATE_JS = """
const w = window.jupyterapp.shell.currentWidget;
const cells = w.content.widgets.filter(c => c.model.type === 'code');
const errors = [];
for (const c of cells) for (const o of c.model.outputs.toJSON()) {
  if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
  if (o.output_type === 'stream' && String(o.text).includes('Traceback')) errors.push(String(o.text).slice(0, 500));
}
return {kernel: w.sessionContext.session.kernel.status,
        queued: w.node.querySelectorAll('.jp-InputPrompt').length
                ? Array.from(w.node.querySelectorAll('.jp-InputPrompt')).some(p => p.textContent.includes('*')) : true,
        unrun: cells.filter(c => c.model.executionCount === null).length,
        errors: errors,
        text: Array.from(w.node.querySelectorAll('.jp-OutputArea-output')).map(n => n.textContent).join('\\n'),
        sliders: w.node.querySelectorAll('.widget-slider').length,
        images: w.node.querySelectorAll('img.widget-image').length};
"""


def open_notebook(browser, url: str, name: str):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 120).until(lambda b: b.execute_script(NOTEBOOK_JS, name),
                                      f"JupyterLab did not open {name} with a kernel")
    WebDriverWait(browser, 120).until(
        lambda b: b.execute_script("return window.jupyterapp.shell.currentWidget.sessionContext.session"
                                   ".kernel.status") == "idle", f"{name}: the kernel never became idle")


def run_all(browser, name: str, shots: Path) -> dict:
    """Run every cell; returns the page state once the kernel is idle and nothing is queued."""
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
    time.sleep(2)
    while time.monotonic() < deadline:
        state = browser.execute_script(STATE_JS)
        if state["errors"] or (state["kernel"] == "idle" and not state["queued"] and not state["unrun"]):
            return state
        time.sleep(2)
    browser.save_screenshot(str(shots / f"{name}-timeout.png"))
    pytest.fail(f"{name}: cells still running after {RUN_ALL_TIMEOUT_S} s ({state}); screenshot in {shots}")


def move_slider_and_wait(browser, name: str, shots: Path) -> None:
    """Press the right arrow on the first slider; the explorer's picture must change."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    handle = browser.find_element("css selector", ".widget-slider .noUi-handle")
    image = browser.find_element("css selector", "img.widget-image")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
    time.sleep(1)
    before_src, before_png = image.get_attribute("src"), image.screenshot_as_png
    readout = browser.find_element("css selector", ".widget-slider .widget-readout")
    before_value = readout.text
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)
    WebDriverWait(browser, 30).until(lambda b: readout.text != before_value, f"{name}: the slider did not move")
    try:
        WebDriverWait(browser, REDRAW_TIMEOUT_S).until(lambda b: image.get_attribute("src") != before_src)
    except Exception:
        browser.save_screenshot(str(shots / f"{name}-no-redraw.png"))
        raise AssertionError(f"{name}: moving the slider ({before_value} -> {readout.text}) did not redraw the "
                             f"picture within {REDRAW_TIMEOUT_S} s; screenshot in {shots}") from None
    time.sleep(1)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
    assert image.screenshot_as_png != before_png, f"{name}: the picture's pixels did not change"


# --------------------------------------------------------------------------- the test
def test_explore_copies_run_with_live_widgets_and_change_nothing(lab, browser, prepared, tmp_path):
    url, log = lab
    for name in ("05_sectionB_taylor", "06_qualitative"):
        open_notebook(browser, url.replace("05_sectionB_taylor.ipynb", f"{name}.ipynb"), f"{name}.ipynb")
        state = run_all(browser, name, tmp_path)
        browser.save_screenshot(str(tmp_path / f"{name}.png"))
        assert not state["errors"], f"{name}: error output: {state['errors']}"
        shown_as_text = sorted(set(m.group(0) for m in AS_TEXT.finditer(state["text"])))
        assert not shown_as_text, f"{name}: widgets rendered as text: {shown_as_text}"
        assert state["sliders"] >= 1 and state["images"] >= 1, f"{name}: no slider or picture rendered ({state})"
        move_slider_and_wait(browser, name, tmp_path)
    assert "without encryption" not in log.read_text(), "a kernel ran over TCP without encryption"

    done = pulkit(prepared, "reproduce", "--profile", PROFILE, "--only", "05", "06")   # exploring changed nothing
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines() if line.startswith(("05_", "06_"))}
    assert rows == {"05_sectionB_taylor": "skipped", "06_qualitative": "skipped"}, done.stdout[-3000:]
