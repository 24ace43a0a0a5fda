"""Kiosk mode: the unit verifies, ``edgeagent kiosk --check`` follows ``ui.kiosk``, and the kiosk
command really shows the page full screen: cage (on wlroots' headless backend, no display here) running
Debian's chromium with the kiosk flags, checked through chromium's own DevTools."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgeagent.config import UiConfig
from edgeagent.ui.kiosk import kiosk_command, page_url, wait_for_page
from tests.conftest import REPO
from tests.ui_support import SCREENSHOTS

UNIT = REPO / "systemd" / "edgeagent-kiosk.service"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_the_kiosk_unit_verifies(tmp_path):
    edgeagent = Path(sys.executable).with_name("edgeagent")
    unit = tmp_path / "edgeagent-kiosk.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgeagent/.venv/bin/edgeagent", str(edgeagent)))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    problems = [line for line in verify.stderr.splitlines() if "edgeagent-kiosk.service" in line]
    assert verify.returncode == 0 and not problems, verify.stderr


def test_kiosk_check_says_whether_ui_kiosk_is_on(tmp_path):
    def kiosk(*args: str, on: bool) -> subprocess.CompletedProcess:
        config = tmp_path / "config.toml"
        config.write_text(f"[ui]\nkiosk = {'true' if on else 'false'}\nport = 8123\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
        return subprocess.run([sys.executable, "-m", "edgeagent", "--config", str(config), "kiosk", *args],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=60)

    assert kiosk("--check", on=False).returncode == 1  # ExecCondition: skipped, not failed
    assert kiosk("--check", on=True).returncode == 0
    printed = kiosk("--print", on=True)
    assert printed.stdout.startswith("cage -d -- chromium --kiosk") and "http://127.0.0.1:8123/" in printed.stdout


def test_page_urls_stay_on_the_device():
    assert page_url(UiConfig(port=8088)) == "http://127.0.0.1:8088/"
    assert page_url(UiConfig(listen="0.0.0.0", port=80)) == "http://127.0.0.1:80/"
    assert page_url(UiConfig(listen="::", port=80)) == "http://[::1]:80/"
    assert page_url(UiConfig(listen="192.0.2.5", port=80)) == "http://192.0.2.5:80/"


def as_user(command: list[str]) -> list[str]:
    """cage will not run as root (CI is root): run it as nobody then."""
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command] if os.geteuid() == 0 else command


def test_the_kiosk_command_shows_the_page_full_screen_under_cage():
    from tests.test_ui_page import PageServer

    if not all(shutil.which(tool) for tool in ("cage", "Xwayland", "chromium")):
        pytest.fail("cage, xwayland and chromium (apt) are needed: `make apt` installs them")
    server = PageServer()
    scratch = Path(tempfile.mkdtemp(prefix="edgeagent-kiosk-"))  # not under pytest's root-only tmp
    runtime, profile = scratch / "run", scratch / "profile"
    for folder in (runtime, profile):
        folder.mkdir(mode=0o700)
    if os.geteuid() == 0:
        for folder in (scratch, runtime, profile):
            shutil.chown(folder, "nobody", "nogroup")
    command = kiosk_command(server.config.ui, profile)
    at = command.index("chromium") + 1  # here only: no GPU, no user namespaces for chromium's sandbox
    command[at:at] = ["--no-sandbox", "--disable-gpu", "--remote-debugging-port=0"]
    env = {**os.environ, "WLR_BACKENDS": "headless", "WLR_LIBINPUT_NO_DEVICES": "1", "WLR_RENDERER": "pixman",
           "XDG_RUNTIME_DIR": str(runtime)}
    assert wait_for_page(server.url, timeout_s=10)  # what `edgeagent kiosk` waits for before it starts cage
    cage = subprocess.Popen(as_user(command), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not server.on_loop(lambda: bool(server.feed._subscriptions)):  # the page opened its event stream
            assert cage.poll() is None, "cage exited"
            assert time.monotonic() < deadline, "the page never connected"
            time.sleep(0.2)
        size, shot = asyncio.run(inspect(profile / "DevToolsActivePort"))
    finally:
        cage.terminate()
        cage.wait(20)
        server.close()
        shutil.rmtree(scratch, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "kiosk-under-cage.png").write_bytes(shot)
    assert size == {"width": 1280, "height": 720, "screen": "1280x720", "title": "edgeagent"}  # all of the output


async def inspect(port_file: Path) -> tuple[dict, bytes]:
    """The page's viewport and a screenshot, through chromium's DevTools protocol."""
    import aiohttp

    port = port_file.read_text().split()[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json") as response:
            target = next(t for t in await response.json(content_type=None) if t["type"] == "page")
        async with session.ws_connect(target["webSocketDebuggerUrl"]) as ws:
            async def call(method: str, **params):
                await ws.send_json({"id": 1, "method": method, "params": params})
                while True:
                    reply = json.loads((await ws.receive()).data)
                    if reply.get("id") == 1:
                        return reply["result"]

            expression = ("JSON.stringify({width: innerWidth, height: innerHeight, "
                          "screen: screen.width + 'x' + screen.height, title: document.title})")
            size = json.loads((await call("Runtime.evaluate", expression=expression))["result"]["value"])
            shot = base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"])
    return size, shot
