"""Last in the suite: credential traffic, the command log, SIGTERM, then the canary scan.

Every credential the suite used is a canary string (conftest.ALL_CANARIES). After the broker
has been stopped with SIGTERM, none of them may appear anywhere under the broker's work dir:
its stdout, its stderr, its log file (log_level DEBUG, log_mode both) and its command logs.
The API token reached the broker only through NETDEV_BROKER_API_TOKEN."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from conftest import (
    ALL_CANARIES,
    CANARY_CMD_SECRET,
    CANARY_ENABLE_SECRET,
    CANARY_WRONG_PASSWORD,
    CANARY_WRONG_TOKEN,
)

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00$")
SECRET_COMMAND = f"username backup privilege 15 secret {CANARY_CMD_SECRET}"
# ~350 bytes: FakeNOS needs ~3.5 s to echo it, past a 1 s deadline.
SLOW_SECRET_COMMAND = f"username backup2 privilege 15 secret {CANARY_CMD_SECRET} " + "x" * 300


@pytest.fixture(scope="module")
def traffic(api, fakenos_device) -> dict:
    """Send every kind of secret through the broker once; leave one session open for SIGTERM."""
    # Enable secret under Netmiko's name `secret`; FakeNOS asks for none, so the broker must
    # reach `#` without ever typing it.
    sid = api.open_session(fakenos_device, secret=CANARY_ENABLE_SECRET)
    r = api.post(f"/session/{sid}/exec", {"commands": ["show version", SECRET_COMMAND]})
    assert r.status == 200, r
    assert "% Invalid input" not in r.json["outputs"]["show version"], r
    # The device rejects the line at the # prompt; the API returns the device's answer as is.
    assert "% Invalid input" in r.json["outputs"][SECRET_COMMAND], r
    # The same secret in a command that misses its deadline: the failure is logged too.
    slow = api.post(f"/session/{sid}/exec", {"commands": [SLOW_SECRET_COMMAND], "timeout": 1}, timeout=60)
    assert slow.status == 500, slow

    bad = api.post(
        "/session",
        {
            "host": fakenos_device.host,
            "port": fakenos_device.port,
            "username": fakenos_device.username,
            "password": CANARY_WRONG_PASSWORD,
        },
    )
    wrong_token = api.get(f"/session/{sid}/status", token=CANARY_WRONG_TOKEN)
    return {"session_id": sid, "bad_password": bad, "wrong_token": wrong_token}


def test_wrong_device_password_is_401(traffic):
    r = traffic["bad_password"]
    assert r.status == 401, r
    assert isinstance(r.json.get("detail"), str), r


def test_wrong_token_is_401(traffic):
    r = traffic["wrong_token"]
    assert r.status == 401, r
    assert isinstance(r.json.get("detail"), str), r


def test_command_log(broker, traffic):
    path = broker.cmd_log_dir / f"{traffic['session_id']}.jsonl"
    assert path.is_file(), sorted(p.name for p in broker.cmd_log_dir.iterdir())
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & ~0o640 == 0, f"command log mode {oct(mode)}, want 0600 or 0640"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    for e in entries:
        assert {"ts", "command", "output"} <= set(e), e
        assert TS_RE.match(e["ts"]), e["ts"]
    show = [e for e in entries if e["command"] == "show version"]
    assert show and "Cisco IOS XE Software" in show[0]["output"], entries
    # Secrets inside commands are masked in the command log, the rest of the line kept.
    masked = [e for e in entries if e["command"].startswith("username backup")]
    assert masked, entries
    for e in masked:
        assert CANARY_CMD_SECRET not in e["command"], e


def test_no_canary_in_proc_environ_or_cmdline(broker, traffic):
    """The token came through NETDEV_BROKER_API_TOKEN; the broker wipes it from its environment
    block at start, so another process of the same user can't read it in /proc/PID/environ."""
    assert broker.proc.poll() is None, "broker not running"
    environ = Path(f"/proc/{broker.proc.pid}/environ").read_bytes()
    cmdline = Path(f"/proc/{broker.proc.pid}/cmdline").read_bytes()
    assert b"NETDEV_BROKER_API_TOKEN=" in environ, "the scan must see the variable's (wiped) slot"
    leaks = [c for c in ALL_CANARIES for where in (environ, cmdline) if c.encode() in where]
    assert not leaks, f"canary readable in /proc/{broker.proc.pid}: {leaks}"
    # The wiped token still authenticates.
    assert broker.api.get("/sessions").status == 200


def test_sigterm_exits_zero_within_10s(api, broker, traffic):
    health = api.get("/health", token=None)
    assert health.status == 200 and health.json["sessions"] >= 1, health  # one still open
    code = broker.stop(grace=10)
    assert code is not None, f"broker still running 10 s after SIGTERM (killed)\n{broker.diagnostics()}"
    assert code == 0, f"broker exited {code} on SIGTERM\n{broker.diagnostics()}"


def scanned_files(broker) -> list[Path]:
    return sorted(p for p in broker.workdir.rglob("*") if p.is_file())


def test_no_canary_in_any_broker_output(broker, traffic):
    broker.stop(grace=10)  # already stopped by the test above unless it was deselected
    files = scanned_files(broker)
    names = {p.relative_to(broker.workdir).as_posix() for p in files}
    # The scan must not be vacuous: the outputs it covers exist and were written to.
    for must in ("stdout.txt", "stderr.txt", "broker.log", f"cmdlog/{traffic['session_id']}.jsonl"):
        assert must in names, sorted(names)
    log_text = broker.log_file.read_text(errors="replace")
    assert traffic["session_id"] in log_text, "session open/close lines should carry the session id"
    assert broker.stdout_path.stat().st_size > 0, "log_mode both: stdout should carry the log too"

    leaks = []
    for p in files:
        data = p.read_bytes()
        for canary in ALL_CANARIES:
            for m in re.finditer(re.escape(canary.encode()), data):
                line_start = data.rfind(b"\n", 0, m.start()) + 1
                line_end = data.find(b"\n", m.end())
                line = data[line_start : line_end if line_end != -1 else len(data)]
                leaks.append(f"{p.relative_to(broker.workdir)}: {canary}: {line[:300]!r}")
    assert not leaks, "canary leaked:\n" + "\n".join(leaks)
