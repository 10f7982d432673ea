"""ansible-core drives execs as jobs with ansible.builtin.uri.

* async: ansible/async_job.yml starts `show slow 6` with `wait: false` (202 and a job to
  poll), long-polls GET .../jobs/{job_id}?wait=2 with `until`/`retries`/`delay` until the job
  has ended, and checks its outputs and the session's job list.

The device is the broker's demo device (test_31's demo_device fixture: `netdev-broker demo`,
a fake Cisco IOS over Telnet that keeps its running configuration across logins), one per test.
The broker is one of this module's own (broker_factory): its command log holds these tests
only. Ansible runs hermetically as in test_30 (its ansible_env fixture)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CANARY_TOKEN
from test_30_ansible import ansible_bin, ansible_env  # noqa: F401 (a fixture)
from test_31_guard_ansible import (  # noqa: F401 (demo_device: a fixture)
    DEMO_PASSWORD,
    demo_device,
    sessions_to_device,
    write_inputs,
)

HERE = Path(__file__).resolve().parent
ASYNC_PLAYBOOK = HERE / "ansible" / "async_job.yml"

# Seconds of `show slow N`. The job outlasts the play's first long-poll (2 s), with seconds to
# spare for Ansible's time between tasks on a loaded machine (~0.5 s a task here).
ASYNC_SLOW = 6
# A play needs ~5-10 s here; the slack is for a loaded 2-core CI machine.
PLAY_TIMEOUT = 180


@pytest.fixture(scope="module")
def jobs_broker(broker_factory):
    return broker_factory("jobs")


def play(playbook: Path, inv: Path, secrets: Path, env: dict, cwd: Path) -> tuple[str, float]:
    """ansible-playbook to its end: its output and how long it took; a failed play fails."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", str(inv), "-e", f"@{secrets}", str(playbook)],
        env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=PLAY_TIMEOUT,
    )  # fmt: skip
    took = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    print(out)
    print(f"{playbook.name}: {took:.1f} s")
    assert proc.returncode == 0, f"ansible-playbook failed:\n{out}"
    assert re.search(r"sw01\s*: ok=\d+ .*failed=0", out), out
    assert CANARY_TOKEN not in out and DEMO_PASSWORD not in out, out
    return out, took


def test_playbooks_syntax(ansible_env, tmp_path):  # noqa: F811
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  children:\n    devices:\n      hosts:\n        sw01:\n")
    proc = subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", str(inv), "--syntax-check", str(ASYNC_PLAYBOOK)],
        env=ansible_env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_long_command_as_a_polled_job(jobs_broker, demo_device, ansible_env, tmp_path):  # noqa: F811
    api, port = jobs_broker.api, demo_device
    inv, secrets = write_inputs(tmp_path, jobs_broker, port, slow_seconds=ASYNC_SLOW)
    out, took = play(ASYNC_PLAYBOOK, inv, secrets, ansible_env, tmp_path)
    # The poll task was retried: a long-poll saw the job running before it ended.
    assert re.search(r"FAILED - RETRYING: \[sw01[^]]*\]: Wait for the job", out), out
    assert took >= ASYNC_SLOW, took
    assert sessions_to_device(api, port) == [], "the play closes its session"

