"""The seed README's curl walkthrough (walkthrough.sh), run unchanged apart from the device port."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_seed_curl_walkthrough(broker, fakenos_device):
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"{tool} not installed (.ci/run installs it)"
    env = dict(
        os.environ,
        HOST=broker.base_url,
        TOKEN=broker.api.token,
        DEVICE=fakenos_device.host,
        DEVICE_PORT=str(fakenos_device.port),
        USER=fakenos_device.username,
        PASS=fakenos_device.password,
    )
    proc = subprocess.run(
        ["bash", str(HERE / "walkthrough.sh")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(proc.stdout)
    print(proc.stderr)
    assert proc.returncode == 0, f"walkthrough failed:\n{proc.stdout}\n{proc.stderr}\n{broker.diagnostics()}"
    assert "walkthrough: " in proc.stdout
