"""ansible-core drives execs as jobs with ansible.builtin.uri.

* async: ansible/async_job.yml starts `show slow 6` with `wait: false` (202 and a job to
  poll), long-polls GET .../jobs/{job_id}?wait=2 with `until`/`retries`/`delay` until the job
  has ended, and checks its outputs and the session's job list.
* idempotent: ansible/idempotent_change.yml pushes a config change (interface Loopback77 and
  its description, then `show slow 5`) with `timeout: 1` and an Idempotency-Key: the first
  call fails with a client timeout while the broker runs on, the same task retried with the
  same key gets 202 while that run goes on, then its answer (200, replayed); the same key with
  another body is 422. Afterwards the device's running config (a fresh login, POST
  /telnet-probe) holds the change once, and the session's command log shows its config lines
  typed exactly once, by the client.

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
    cmdlog,
    demo_device,
    running_config,
    sessions_to_device,
    write_inputs,
)

HERE = Path(__file__).resolve().parent
ASYNC_PLAYBOOK = HERE / "ansible" / "async_job.yml"
CHANGE_PLAYBOOK = HERE / "ansible" / "idempotent_change.yml"

# Seconds of `show slow N`. The async job outlasts the play's first long-poll (2 s) and the
# change outlasts the client's timeout (1 s) and its first retry, with seconds to spare for
# Ansible's time between tasks on a loaded machine (~0.5 s a task here).
ASYNC_SLOW, CHANGE_SLOW = 6, 5
LOOPBACK, DESCRIPTION = 77, "pushed-once-by-ansible"
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
        [ansible_bin("ansible-playbook"), "-i", str(inv), "--syntax-check", str(ASYNC_PLAYBOOK),
         str(CHANGE_PLAYBOOK)],
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


def test_change_retried_with_an_idempotency_key_runs_once(
    jobs_broker, demo_device, ansible_env, tmp_path  # noqa: F811
):
    api, port = jobs_broker.api, demo_device
    interface = f"interface Loopback{LOOPBACK}"
    description = f" description {DESCRIPTION}"
    assert interface not in running_config(api, port)
    inv, secrets = write_inputs(
        tmp_path, jobs_broker, port,
        change_key=f"ansible-change-{time.time_ns()}", loopback=LOOPBACK, description=DESCRIPTION,
        slow_seconds=CHANGE_SLOW,
    )  # fmt: skip
    out, _ = play(CHANGE_PLAYBOOK, inv, secrets, ansible_env, tmp_path)
    # The retried task met the running job (202) at least once before its answer.
    assert re.search(r"FAILED - RETRYING: \[sw01[^]]*\]: Push the change again", out), out
    assert sessions_to_device(api, port) == [], "the play closes its session"

    # The device: the change, once (a fresh login).
    config = running_config(api, port)
    assert config.count(interface) == 1, config
    at = config.index(interface)
    assert config[at + 1] == description, config[at : at + 3]

    # The broker's command log of the play's session: each config line typed once, by the client.
    m = re.search(r'"msg": "session_id=([0-9a-f]+)"', out)
    assert m, out
    log = cmdlog(jobs_broker, m.group(1))
    assert log, f"no command log for session {m.group(1)}"
    for line in (interface, description):
        typed = [e for e in log if e["command"].strip() == line.strip()]
        assert len(typed) == 1, (line, log)
        assert typed[0]["by"] == "default", typed  # the api_token's name
    # Nor did any other session of the broker's type it.
    everywhere = [
        e for p in jobs_broker.cmd_log_dir.glob("*.jsonl") for e in cmdlog(jobs_broker, p.stem)
        if e["command"].strip() == interface
    ]  # fmt: skip
    assert len(everywhere) == 1, everywhere
    slow = [e for e in log if e["command"] == f"show slow {CHANGE_SLOW}"]
    assert len(slow) == 1 and slow[0]["by"] == "default", log
