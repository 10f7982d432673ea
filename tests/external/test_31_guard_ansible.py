"""ansible-core drives the change guard (ansible/guarded_change.yml) with ansible.builtin.uri:
open a safety session, arm the guard with the undo of an AAA change, apply the change through
a second session, probe the new login, confirm.

* killed: the play is killed with SIGKILL (ansible-playbook and its workers) after the
  device shows the change, while the guard is armed. Nobody calls the API after that (the test
  only reads: GET /guards, .../guard and .../status, and the device's running config through
  POST /telnet-probe), and the broker rolls the device back by itself at the deadline: the undo
  lines typed by the guard (command log, `"by": "guard"`), state rolled_back, fired_by
  deadline, the change gone from the device.
* confirmed: the same play runs to its end: the guard's probe logs in, the confirm keeps the
  change, nothing ran by the guard but its own events, both sessions are closed.

The device is the broker's own demo device (`netdev-broker demo`: the fake-device crate's Cisco
IOS over Telnet), which keeps its running configuration across connections, so a fresh login
shows what the sessions changed. Each test starts one of its own (a clean running config). The
broker is one of this module's own (broker_factory): its command log holds these tests only.
Ansible runs hermetically as in test_30 (its ansible_env fixture)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from conftest import CANARY_TOKEN, broker_binary, stop_process, tail
from test_30_ansible import ansible_bin, ansible_env  # noqa: F401 (a fixture)

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "ansible" / "guarded_change.yml"

# The demo device's login (printed by `netdev-broker demo`; not a secret of the suite's).
DEMO_USER, DEMO_PASSWORD, DEMO_ENABLE = "admin", "cisco", "cisco"
CHANGE = ["aaa new-model", "aaa authentication login default group tacacs+ local"]
UNDO = ["no aaa authentication login default group tacacs+ local", "no aaa new-model"]
# Seconds: the play needs about 1 s from the arm to the change; 8 leaves room on a loaded machine
# for the kill to happen while the guard is still armed.
GUARD_TIMEOUT = 8


@pytest.fixture()
def demo_device(tmp_path) -> Iterator[int]:
    """`netdev-broker demo` on a free port: its device's Telnet port (its broker is unused)."""
    out = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETDEV_BROKER_")}
    env["TMPDIR"] = str(tmp_path)  # the demo broker's state_dir
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            [str(broker_binary()), "demo", "--port", "0"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not (m := re.search(r"device:\s+telnet 127\.0\.0\.1 (\d+)", out.read_text())):
            assert proc.poll() is None, f"demo exited with {proc.returncode}:\n{tail(out)}"
            assert time.monotonic() < deadline, f"demo printed no device port in 15 s:\n{tail(out)}"
            time.sleep(0.1)
        yield int(m.group(1))
    finally:
        stop_process(proc, signal.SIGTERM, grace=10)


@pytest.fixture(scope="module")
def guard_broker(broker_factory):
    return broker_factory("guard")


def login(port: int) -> dict:
    return {
        "host": "127.0.0.1",
        "port": port,
        "username": DEMO_USER,
        "password": DEMO_PASSWORD,
        "enable_password": DEMO_ENABLE,
    }


def running_config(api, port: int) -> list[str]:
    """The device's running config, from a fresh login (POST /telnet-probe), line by line."""
    r = api.post("/telnet-probe", {**login(port), "command": "show running-config"}, timeout=30)
    assert r.status == 200 and r.json["login"] == "ok", r
    return [line.rstrip() for line in (r.json["output"] or "").splitlines()]


def changed(config: list[str]) -> bool:
    return all(line in config for line in CHANGE)


def untouched(config: list[str]) -> bool:
    # "no aaa new-model" is in the persona's fixed configuration; the change adds the others.
    return not any(line in config for line in CHANGE)


def cmdlog(broker, session_id: str) -> list[dict]:
    path = broker.cmd_log_dir / f"{session_id}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_inputs(tmp_path: Path, broker, port: int, **extra) -> tuple[Path, Path]:
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        yaml.safe_dump(
            {"all": {"children": {"devices": {"hosts": {"sw01": {
                "ansible_host": "127.0.0.1", "device_port": str(port),
            }}}}}}
        )
    )  # fmt: skip
    # Credentials in an extra-vars file (0600), as a vault file would hold them; never on argv.
    secrets = tmp_path / "vars.json"
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "broker_url": broker.base_url,
                "broker_token": broker.api.token,
                "local_user": DEMO_USER,
                "local_pass": DEMO_PASSWORD,
                "enable_pass": DEMO_ENABLE,
                "guard_timeout": GUARD_TIMEOUT,
                **extra,
            },
            f,
        )
    return inv, secrets


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def kill_tree(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def sessions_to_device(api, port: int) -> list[dict]:
    r = api.get("/sessions")
    assert r.status == 200, r
    body = r.json
    items = body if isinstance(body, list) else body.get("sessions", [])
    return [s for s in items if int(s.get("port", 0)) == port]


def cleanup(api, port: int) -> None:
    """Whatever a killed play left on the broker: disarm (no rollback) and close."""
    for s in sessions_to_device(api, port):
        sid = s["session_id"]
        api.delete(f"/telnet-session/{sid}/guard")
        api.delete(f"/telnet-session/{sid}")


def test_playbook_syntax(ansible_env, tmp_path):  # noqa: F811
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"devices": {"hosts": {"sw01": None}}}}}))
    proc = subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", str(inv), "--syntax-check", str(PLAYBOOK)],
        env=ansible_env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_guard_rolls_back_after_the_play_is_killed(
    guard_broker, demo_device, ansible_env, tmp_path  # noqa: F811
):
    api, port = guard_broker.api, demo_device
    assert untouched(running_config(api, port))
    inv, secrets = write_inputs(tmp_path, guard_broker, port, migration_seconds=300)
    out = tmp_path / "ansible.out"
    with open(out, "wb") as f:
        play = subprocess.Popen(
            [ansible_bin("ansible-playbook"), "-i", str(inv), "-e", f"@{secrets}", str(PLAYBOOK)],
            env=ansible_env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=f,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        # Until the device shows the change (a fresh login each time) and the play has gone on to
        # the rest of the migration (the change's task ended: no answer is left in flight), then
        # SIGKILL.
        deadline = time.monotonic() + 120
        while not (
            "TASK [The rest of the migration]" in out.read_text() and changed(running_config(api, port))
        ):
            assert play.poll() is None, f"the play ended before the change:\n{out.read_text()}"
            assert time.monotonic() < deadline, f"no change on the device in 120 s:\n{out.read_text()}"
            time.sleep(0.2)
        # The whole play at once: ansible-playbook and its workers (each in a session of its own,
        # so not in the play's process group), the one running wait_for included.
        tree = process_tree(play.pid)
        kill_tree(tree)
        killed_at = time.monotonic()
        assert play.wait(timeout=10) == -signal.SIGKILL
        assert len(tree) > 1, "no worker was running the migration's wait_for"
        while not all(gone(p) for p in tree):
            assert time.monotonic() < killed_at + 10, [p for p in tree if not gone(p)]
            time.sleep(0.1)
        text = out.read_text()
        assert "TASK [Log in anew with the new AAA configuration]" not in text, text
        assert "TASK [Keep the change]" not in text, text
        assert CANARY_TOKEN not in text and DEMO_PASSWORD not in text, text

        # The play armed the guard on its safety session; it is still armed after the kill.
        guards = api.get("/guards")
        assert guards.status == 200, guards
        armed = [g for g in guards.json["guards"] if g["state"] == "armed"]
        assert len(armed) == 1, (guards, text)
        sid = armed[0]["session_id"]
        g = api.get(f"/telnet-session/{sid}/guard")
        assert g.status == 200 and g.json["state"] == "armed", (g, text)
        assert g.json["timeout"] == GUARD_TIMEOUT, g
        deadline_at = datetime.fromisoformat(g.json["deadline"])
        print(f"killed with {g.json['seconds_left']} s of the guard's {GUARD_TIMEOUT} s left")

        # Nobody confirms: the broker rolls back at the deadline (checked within 1 s) by itself.
        deadline = killed_at + GUARD_TIMEOUT + 15
        while (g := api.get(f"/telnet-session/{sid}/guard")).json["state"] in ("armed", "firing"):
            assert time.monotonic() < deadline, g
            time.sleep(0.2)
        assert g.json["state"] == "rolled_back", g
        assert g.json["fired_by"] == "deadline", g
        ended_at = datetime.fromisoformat(g.json["ended_at"])
        assert 0 <= (ended_at - deadline_at).total_seconds() <= 2, g  # at the deadline, not later
        assert [r["command"] for r in g.json["result"]["results"] if r["command"] in UNDO] == UNDO, g
        assert not any(r["failed"] for r in g.json["result"]["results"]), g
        assert untouched(running_config(api, port)), "the device still has the change"

        # The command log: the undo lines typed by the guard, nothing typed by a client.
        log = cmdlog(guard_broker, sid)
        by_guard = [e["command"] for e in log if e["by"] == "guard"]
        assert [c for c in by_guard if c in UNDO] == UNDO, log
        assert any(c.startswith("[guard] fired (deadline)") for c in by_guard), log
        assert [e for e in log if e["by"] != "guard"] == [], log
        status = api.get(f"/telnet-session/{sid}/status")
        assert status.status == 200 and status.json["guard"]["state"] == "rolled_back", status
    finally:
        if play.poll() is None:
            kill_tree(process_tree(play.pid))
            play.wait(timeout=10)
        cleanup(api, port)
    assert sessions_to_device(api, port) == []


def test_guard_confirmed_after_the_probe_keeps_the_change(
    guard_broker, demo_device, ansible_env, tmp_path  # noqa: F811
):
    api, port = guard_broker.api, demo_device
    assert untouched(running_config(api, port))
    before = {p.name for p in guard_broker.cmd_log_dir.glob("*.jsonl")}
    # A guard long enough that only the confirm can end it while the play runs.
    inv, secrets = write_inputs(tmp_path, guard_broker, port, migration_seconds=0, guard_timeout=120)
    try:
        proc = subprocess.run(
            [ansible_bin("ansible-playbook"), "-i", str(inv), "-e", f"@{secrets}", "-v", str(PLAYBOOK)],
            env=ansible_env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"ansible-playbook failed:\n{text}\n{guard_broker.diagnostics()}"
        assert "failed=0" in proc.stdout and "rescued=0" in proc.stdout, text
        assert "TASK [Keep the change]" in proc.stdout, text
        assert CANARY_TOKEN not in text and DEMO_PASSWORD not in text, text

        assert changed(running_config(api, port)), "the confirmed change is gone"
        assert sessions_to_device(api, port) == [], "the play closes both sessions"
        assert not [g for g in api.get("/guards").json["guards"] if g["state"] == "armed"]

        # The safety session's command log: the guard's events (armed, probe, confirmed), no
        # rollback line.
        new = sorted({p.name for p in guard_broker.cmd_log_dir.glob("*.jsonl")} - before)
        logs = {name: cmdlog(guard_broker, name.removesuffix(".jsonl")) for name in new}
        guarded = [log for log in logs.values() if any(e["by"] == "guard" for e in log)]
        assert len(guarded) == 1, logs
        by_guard = [e["command"] for e in guarded[0] if e["by"] == "guard"]
        assert any(c.startswith("[guard] armed") for c in by_guard), by_guard
        assert any(c.startswith("[guard] probe: a new login succeeded") for c in by_guard), by_guard
        assert any("confirmed" in c for c in by_guard), by_guard
        assert not any(c in UNDO or c.startswith("[guard] fired") for c in by_guard), by_guard
    finally:
        cleanup(api, port)
