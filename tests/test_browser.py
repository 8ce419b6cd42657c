"""JupyterLab as a presenter uses it: `make lab`, Debian's chromium at 1280x800, Run > Run All Cells (issue 10).

`make lab` starts JupyterLab with the project's settings (jupyter/: loopback, as root, no autosave, no news) on a
free port with a token. Selenium drives Debian's chromium through Debian's chromium-driver: both come from apt and
from the same Chromium build, so the driver always matches the browser, and Selenium (a pure-Python wheel from PyPI)
never runs Selenium Manager, which would download a driver, when given the driver's path. Playwright would need its
own Node driver and expects the Chromium revision it was built against, not Debian's.

Screenshots of each notebook after Run All go to out/browser/<notebook>.png (the whole notebook, not only the first
screen). The tracked notebooks are never written: autosave is off and nothing is saved.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gtcdemo import project
from gtcdemo.local import LocalTarget
from tests.support import free_port, mentioning, poll

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")  # Debian's packages
WIDTH, HEIGHT = 1280, 800
SHOTS = project.ROOT / "out" / "browser"
# stderr text, and exceptions too: JupyterLab renders an error output's traceback with the stderr mime type.
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Debian's chromium and chromium-driver are not installed: `make setup` installs them with apt-get, "
           "which needs root ([tool.gtcdemo] apt in pyproject.toml)")


@dataclass
class Lab:
    url: str
    token: str
    runtime: Path  # JUPYTER_RUNTIME_DIR: the kernels' connection files
    out: Path  # GTCDEMO_OUT of the kernels: figures and demo.log
    log: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:  # loopback only
            body = response.read()
        return json.loads(body) if body.strip().startswith((b"{", b"[")) else body.decode()


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file under ``folder``: the notebooks must come out byte for byte the same."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`make lab` on a free loopback port with a token; stopped with its kernels (and any graph 02 deployed)."""
    tmp = tmp_path_factory.mktemp("lab")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_TOKEN": token,
           # The project's settings come from jupyter/ (set by `make lab`); what a user changes in the UI would be
           # written here, so a fresh folder per run: the test sees only the project's defaults.
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "user-settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "GTCDEMO_STATE": str(tmp / "state"),
           "GTCDEMO_OUT": str(tmp / "out")}
    before = fingerprint(project.NOTEBOOKS)
    log = tmp / "lab.log"
    # -o: never reinstall from inside a test (`make test` has just run setup).
    command = ["make", "--no-print-directory", "-o", str(project.ROOT / ".venv" / ".gtcdemo-installed"), "lab",
               f"LAB_ARGS=--no-browser --port={port} --ServerApp.port_retries=0"]
    with open(log, "w") as sink:
        proc = subprocess.Popen(command, cwd=project.ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    served = Lab(f"http://127.0.0.1:{port}", token, tmp / "runtime", tmp / "out", log)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"`make lab` exited with code {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                return bool(served.get(f"/api/status?token={token}"))
            except OSError:
                return False

        poll(up, timeout_s=60, interval_s=0.2, what="JupyterLab to answer /api/status")
        yield served
    finally:
        try:  # the server shuts its kernels down, then exits
            if proc.poll() is None:
                urllib.request.urlopen(urllib.request.Request(f"{served.url}/api/shutdown?token={token}",
                                                              method="POST"), timeout=10)
                proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)  # make and the server (the kernels have sessions of their own)
            proc.wait(timeout=10)
        try:  # kernels run in sessions of their own and exit when the server is gone (JPY_PARENT_PID)
            poll(lambda: not mentioning(served.runtime), timeout_s=30, what="the lab's kernels to exit")
        finally:
            graph = LocalTarget("dev", state_dir=tmp / "state" / "dev-gtc-demo")
            graph.teardown()
        assert graph.leftover_pids() == [], "the graph 02_deploy started is still running"
        after = fingerprint(project.NOTEBOOKS)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert changed == [], f"JupyterLab wrote into notebooks/: {changed}"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Debian's chromium, headless, its page 1280x800; quit (with chromedriver) after the test, also on failure."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path / "chromium-profile"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}",
                f"--user-data-dir={profile}", "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)  # --no-sandbox: chromium refuses to run as root with its sandbox
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    try:
        set_viewport(driver, HEIGHT)
        yield driver
    finally:
        driver.quit()
        poll(lambda: not mentioning(profile), timeout_s=20, what="chromium to exit")


def set_viewport(driver: Any, height: int) -> None:
    """The page's size in CSS pixels, whatever the headless window's frame takes."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False})


def js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


# What the page shows of the open notebook, read in one go: per cell its kind, input prompt, output mime types,
# images (natural size) and text.
REPORT = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!panel) return null;
return {
  kernel: panel.querySelector('.jp-KernelName')?.textContent,
  status: panel.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status'),
  cells: [...panel.querySelectorAll('.jp-Notebook .jp-Cell')].map(c => ({
    code: c.classList.contains('jp-CodeCell'),
    prompt: c.querySelector('.jp-InputPrompt')?.textContent.trim(),
    outputs: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.getAttribute('data-mime-type')),
    images: [...c.querySelectorAll('.jp-OutputArea-output img')].map(i => [i.naturalWidth, i.naturalHeight]),
    tables: c.querySelectorAll('.jp-OutputArea-output table').length,
    text: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).join('\\n'),
  })),
  stderr: [...panel.querySelectorAll(arguments[0])].map(o => o.textContent),
  page: document.body.innerText,
};
"""


def report(driver: Any) -> dict:
    return driver.execute_script(REPORT, STDERR)


def open_and_run_all(driver: Any, lab: Lab, name: str, timeout_s: float) -> dict:
    """Open ``name``, wait for its kernel, Run > Run All Cells through the menu, wait until every code cell has run
    and the kernel status indicator is idle again; returns the page's report."""
    from selenium.webdriver.common.by import By

    cells = json.loads((project.NOTEBOOKS / name).read_text())["cells"]
    driver.get(f"{lab.url}/lab/tree/{name}?token={lab.token}")

    def kernel_idle() -> dict | None:
        r = report(driver)
        ready = r and len(r["cells"]) == len(cells) and r["kernel"] == "Python 3 (ipykernel)" and r["status"] == "idle"
        return r if ready else None

    poll(kernel_idle, timeout_s=60, interval_s=0.2, what=f"{name} open with an idle Python 3 kernel")
    driver.find_element(By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Run']").click()
    run_all = poll(lambda: driver.find_elements(
        By.XPATH, "//li[contains(@class,'lm-Menu-item')]"
                  "[.//div[contains(@class,'lm-Menu-itemLabel') and text()='Run All Cells']]"),
        timeout_s=10, what="the Run menu")
    run_all[0].click()  # type: ignore[index]

    def all_ran() -> dict | None:
        r = report(driver)
        # The notebook's fresh kernel numbers the cells 1..N as it runs them; the stored notebook shows "[ ]:" (or a
        # count kept for nbval), so this is the end of this Run All, not what was there before it.
        prompts = [c["prompt"] for c in r["cells"] if c["code"]]
        complete = prompts == [f"[{i}]:" for i in range(1, len(prompts) + 1)]
        # An exception (shown as stderr text) stops Run All: report it rather than time out.
        stopped = bool(r["stderr"]) and "[*]:" not in prompts
        done = (complete or stopped) and r["status"] == "idle"
        loaded = all(w > 0 for c in r["cells"] for w, _ in c["images"])  # images decode after the output arrives
        return r if done and loaded else None

    return poll(all_ran, timeout_s=timeout_s, interval_s=0.25, what=f"Run All of {name} to finish")  # type: ignore[return-value]


def screenshot(driver: Any, name: str) -> Path:
    """The whole notebook area: the page is made as tall as the notebook's cells for the shot, then put back."""
    from selenium.webdriver.common.by import By

    # How far the last cell reaches below the bottom of the notebook's scroll area (scrolled to the top); the area
    # also scrolls past the end, so its scrollHeight is no measure of the cells.
    below = """const o = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
               o.scrollTop = 0; const cells = o.querySelectorAll('.jp-Cell');
               const last = cells[cells.length - 1].getBoundingClientRect();
               return Math.ceil(last.bottom - o.getBoundingClientRect().bottom);"""
    set_viewport(driver, HEIGHT + max(0, js(driver, below)) + 16)
    poll(lambda: js(driver, below) <= 0, timeout_s=10, what="the page to show the whole notebook")
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{Path(name).stem}.png"
    driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden)").screenshot(str(path))
    set_viewport(driver, HEIGHT)
    return path


def code_cell_index(name: str, needle: str) -> int:
    """Index of the first cell whose source contains ``needle`` (the page lists cells in the notebook's order)."""
    cells = json.loads((project.NOTEBOOKS / name).read_text())["cells"]
    return next(i for i, c in enumerate(cells) if c["cell_type"] == "code" and needle in "".join(c["source"]))


def assert_clean(r: dict, name: str) -> None:
    assert r["stderr"] == [], f"{name}: stderr or an exception shown in the page: {r['stderr']}"
    assert "Jupyter news" not in r["page"], "the news pop-up is shown"
    bad = [(i, w, h) for i, c in enumerate(r["cells"]) for w, h in c["images"] if not (w and h)]
    assert bad == [], f"{name}: figures not rendered (cell, width, height): {bad}"


def test_lab_runs_as_root_on_loopback_with_the_projects_settings(lab: Lab) -> None:
    """`make lab` as root serves on 127.0.0.1 only, with autosave and news off, and kernel "Python 3" of .venv."""
    docs = lab.get(f"/lab/api/settings/@jupyterlab/docmanager-extension:plugin?token={lab.token}")
    autosave = docs["settings"].get("autosave", docs["schema"]["properties"]["autosave"]["default"])
    assert autosave is False, "autosave would write Run All's outputs into the tracked notebooks"
    news = lab.get(f"/lab/api/settings/@jupyterlab/apputils-extension:notification?token={lab.token}")
    assert news["settings"].get("fetchNews", news["schema"]["properties"]["fetchNews"]["default"]) == "false"
    assert '"news": {"disabled": true}' in lab.get(f"/lab?token={lab.token}")
    port = int(lab.url.rsplit(":", 1)[1])
    listening = [line.split()[1] for table in ("/proc/net/tcp", "/proc/net/tcp6")
                 for line in Path(table).read_text().splitlines()[1:]
                 if line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == port]
    assert listening and all(a.startswith("0100007F:") for a in listening), f"not loopback only: {listening}"
    assert lab.get(f"/api/kernelspecs?token={lab.token}")["default"] == "python3"


def run_clean(browser: Any, lab: Lab, name: str, timeout_s: float) -> dict:
    """Run All through the UI, save the screenshot (a test artifact) and assert no error output."""
    started = time.monotonic()
    r = open_and_run_all(browser, lab, name, timeout_s=timeout_s)
    shot = screenshot(browser, name)
    print(f"{name}: ran in {time.monotonic() - started:.1f} s; screenshot {shot}")
    assert_clean(r, name)
    return r


def test_demo_replays_in_the_browser(lab: Lab, browser: Any) -> None:
    """demo.ipynb (replay, its default) run through the UI: banner, every figure, the dashboard redrawn in place."""
    name = "demo.ipynb"
    r = run_clean(browser, lab, name, timeout_s=90)
    assert any("REPLAY: recorded" in c["text"] for c in r["cells"]), "the replay banner is not shown"
    dashboard = r["cells"][code_cell_index(name, "dashboard(")]
    assert len(dashboard["images"]) == 1, f"the dashboard shows {len(dashboard['images'])} figures, not one updated"
    kv = r["cells"][code_cell_index(name, "kv_cache(")]
    assert len(kv["images"]) >= 1, "the KV-cache figure is not shown"
    log = lab.out / "demo.log"
    assert not log.exists() or "failed" not in log.read_text(), log.read_text()
    # The kernel is .venv's Python and its transport is encrypted (no "running over TCP without encryption").
    kernels = mentioning(lab.runtime)  # the kernels name their connection file in the runtime folder
    argv0 = {Path("/proc", str(pid), "cmdline").read_bytes().split(b"\0")[0].decode() for pid in kernels}
    assert argv0 and all(Path(a).parent == project.ROOT / ".venv" / "bin" for a in argv0), argv0
    connections = list(lab.runtime.glob("kernel-*.json"))
    assert connections and all("curve_secretkey" in json.loads(c.read_text()) for c in connections)
    assert "without encryption" not in lab.log.read_text()


@pytest.mark.local
def test_deploy_on_the_local_target_in_the_browser(lab: Lab, browser: Any) -> None:
    """02_deploy.ipynb run through the UI deploys the local graph (the lab fixture stops it): no errors, tables."""
    name = "02_deploy.ipynb"
    r = run_clean(browser, lab, name, timeout_s=150)
    assert sum(c["tables"] for c in r["cells"]) >= 2, "the bundle and apply tables are not shown"
    assert any("ready: True" in c["text"] for c in r["cells"]), "the graph did not answer"
