"""The web dashboard in a real browser: Debian's ``chromium`` driven by ``playwright-core``.

The scenario itself is tests/browser/dashboard.mjs (node; playwright-core pinned in
tests/browser/package-lock.json, installed there by ``npm ci`` in .ci/run). This test starts
what it needs on 127.0.0.1 and checks what the browser cannot see:

* a broker (conftest ``broker_factory``) with ``web_users`` whose bcrypt hash is made by the
  binary's own ``hash-password --cost 4``, and a ``web_secret_key``;
* the FakeNOS ``cisco_ios`` device (conftest ``fakenos_device``) for the sessions the scenario
  opens through the API;
* afterwards: no session left, the broker's log tells who closed what, and no web credential
  (password, wrong password, secret key) nor the API token or device password reached the
  broker's stdout, stderr, log file or command logs.

Screenshots (1280x720 PNG) go to ``$CARGO_TARGET_DIR/browser`` (default target/browser): the
CI artifacts. ``UPDATE_DOCS_SCREENSHOT=1`` also copies dashboard-two.png to docs/dashboard.png.

Chromium (/usr/bin/chromium), node and tests/browser/node_modules are installed by .ci/run: with
CI=true a missing one fails this test; elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CANARY_PASSWORD, CANARY_TOKEN, REPO, broker_binary, tail

BROWSER_DIR = REPO / "tests" / "browser"
SCRIPT = BROWSER_DIR / "dashboard.mjs"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "browser"
DOCS_SHOT = REPO / "docs" / "dashboard.png"
DOCS_SOURCE = "dashboard-two.png"  # two sessions with their last commands

WEB_USER = "ops"
WEB_PASSWORD = "CANARY-webpw-5e19"
WEB_WRONG_PASSWORD = "CANARY-webbadpw-0c7d"
WEB_SECRET_KEY = "CANARY-webkey-a83f-0123456789abcdef"  # 32+ bytes, as the broker requires
CANARIES = (WEB_PASSWORD, WEB_WRONG_PASSWORD, WEB_SECRET_KEY, CANARY_PASSWORD, CANARY_TOKEN)

XSS_COMMAND = "show <script>alert(1)</script>"
SHOTS = ("login.png", "login-error.png", "dashboard.png", "after-close.png", "dashboard-two.png",
         "confirm-close-all.png", "logged-out.png")  # fmt: skip


def missing_tools() -> list[str]:
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    if shutil.which("node") is None:
        missing.append("node (Debian package nodejs)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        missing.append("tests/browser/node_modules (npm ci in tests/browser)")
    return missing


@pytest.fixture(scope="module")
def tools() -> None:
    missing = missing_tools()
    if not missing:
        return
    msg = "the browser test needs " + ", ".join(missing) + " (.ci/run installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def hash_password(password: str) -> str:
    r = subprocess.run(
        [str(broker_binary()), "hash-password", "--cost", "4"],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    h = r.stdout.strip()
    assert re.fullmatch(r"\$2b\$04\$[./A-Za-z0-9]{53}", h), h
    assert password not in r.stdout + r.stderr
    return h


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_dashboard_in_chromium(tools, broker_factory, fakenos_device):
    web = broker_factory(
        "web",
        web_users=[{"username": WEB_USER, "password_hash": hash_password(WEB_PASSWORD)}],
        web_secret_key=WEB_SECRET_KEY,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETDEV_BROKER_", "DEVICE_", "WEB_"))}
    env.update(
        BROKER_URL=web.base_url,
        BROKER_API_TOKEN=web.api.token,
        WEB_USERNAME=WEB_USER,
        WEB_PASSWORD=WEB_PASSWORD,
        WEB_WRONG_PASSWORD=WEB_WRONG_PASSWORD,
        DEVICE_HOST=fakenos_device.host,
        DEVICE_PORT=str(fakenos_device.port),
        DEVICE_USERNAME=fakenos_device.username,
        DEVICE_PASSWORD=fakenos_device.password,
        SCREENSHOT_DIR=str(ARTIFACTS),
        CHROMIUM=str(CHROMIUM),
    )
    t0 = time.monotonic()
    try:
        run = subprocess.run(
            ["node", str(SCRIPT)],
            cwd=BROWSER_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=150,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"dashboard.mjs still running after 150 s\n{e.stderr or ''}\n{web.diagnostics()}")
    seconds = time.monotonic() - t0
    (ARTIFACTS / "dashboard.log").write_text(run.stderr)
    print(run.stderr)
    lines = run.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    assert run.returncode == 0 and summary.get("ok") is True, (
        f"dashboard.mjs exit {run.returncode}: {summary.get('error')}\n"
        f"--- its log ---\n{run.stderr[-6000:]}\n{web.diagnostics()}"
    )
    print(f"chromium {summary['chromium']}, playwright-core {summary['playwright']}, {seconds:.1f}s")

    # What the browser did, as the broker saw it.
    assert web.api.get("/sessions").json["count"] == 0
    log = web.log_file.read_text(errors="replace")
    assert re.search(r"dashboard: failed login from 127\.0\.0\.1 \(user \"ops\"\)", log), tail(web.log_file)
    assert f"dashboard: {WEB_USER} logged in from 127.0.0.1" in log
    assert len(re.findall(rf"dashboard: {WEB_USER} closed session [0-9a-f]{{32}}", log)) == 1, tail(web.log_file)
    assert f"dashboard: {WEB_USER} closed all sessions (2)" in log
    assert f"dashboard: {WEB_USER} logged out" in log
    assert "refused: bad or missing CSRF token" not in log

    # The command log has the command as sent (the page's escaping is the page's business).
    cmdlogs = [p.read_text() for p in web.cmd_log_dir.glob("*.jsonl")]
    assert any(json.loads(line)["command"] == XSS_COMMAND for text in cmdlogs for line in text.splitlines())

    for name in SHOTS:
        assert png_size(ARTIFACTS / name) == (1280, 720), name
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / DOCS_SOURCE, DOCS_SHOT)

    # No credential in anything the broker wrote (its config file holds the hash and key: skipped).
    assert web.stop(grace=10) == 0, web.diagnostics()
    leaks = []
    for p in sorted(web.workdir.rglob("*")):
        if p.is_file() and p != web.config_path:
            data = p.read_text(errors="replace")
            leaks += [f"{p.relative_to(web.workdir)}: {c}" for c in CANARIES if c in data]
    assert not leaks, "canary leaked:\n" + "\n".join(leaks)
