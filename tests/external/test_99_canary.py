"""Last in the suite: credential traffic, the command log, the audit log, SIGTERM, then the
canary scan.

Every credential the suite used is a canary string (conftest.ALL_CANARIES). After the broker
has been stopped with SIGTERM, none of them may appear anywhere under the broker's work dir:
its stdout, its stderr, its log file (log_level DEBUG, log_mode both), its audit log and its
command logs. The API token reached the broker only through NETDEV_BROKER_API_TOKEN; the named
tokens (conftest.NAMED_TOKENS: operators, an admin, a viewer) only as their SHA-256 in the config,
and each was used here (and by earlier files of the suite) in allowed and refused requests."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from conftest import (
    ALL_CANARIES,
    CANARY_ADMIN_TOKEN,
    CANARY_CMD_SECRET,
    CANARY_ENABLE_SECRET,
    CANARY_OPERATOR2_TOKEN,
    CANARY_OPERATOR_TOKEN,
    CANARY_VIEWER_TOKEN,
    CANARY_WRONG_PASSWORD,
    CANARY_WRONG_TOKEN,
    NAMED_TOKENS,
    Api,
)

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00$")
SECRET_COMMAND = f"username backup privilege 15 secret {CANARY_CMD_SECRET}"
# ~350 bytes: FakeNOS needs ~3.5 s to echo it, past a 1 s deadline.
SLOW_SECRET_COMMAND = f"username backup2 privilege 15 secret {CANARY_CMD_SECRET} " + "x" * 300
AUDIT_KEYS = {
    "ts", "request_id", "token", "role", "web_user", "expired", "client", "method", "route", "session_id", "status",
}


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
    # A refused state-changing request is audited too (token null).
    wrong_close = api.delete(f"/session/{sid}", token=CANARY_WRONG_TOKEN)
    assert wrong_close.status == 401, wrong_close

    # Named tokens: an operator opens a session and runs the secret command on it; a viewer
    # lists it but may not close it; the other operator does not see it (its DELETE closes
    # nothing); the admin sees its owner and closes it.
    assert NAMED_TOKENS["ansible-a"][1] == CANARY_OPERATOR_TOKEN
    operator = Api(api.base_url, CANARY_OPERATOR_TOKEN)
    op_sid = operator.open_session(fakenos_device, secret=CANARY_ENABLE_SECRET)
    r = operator.post(f"/session/{op_sid}/exec", {"commands": ["show version", SECRET_COMMAND]})
    assert r.status == 200 and "% Invalid input" in r.json["outputs"][SECRET_COMMAND], r
    viewer = Api(api.base_url, CANARY_VIEWER_TOKEN)
    listed = viewer.get("/sessions")
    assert listed.status == 200 and op_sid in [x["session_id"] for x in listed.json["sessions"]], listed
    refused = viewer.delete(f"/session/{op_sid}")
    assert refused.status == 403, refused
    other = Api(api.base_url, CANARY_OPERATOR2_TOKEN)
    r = other.get(f"/session/{op_sid}/status")
    assert r.status == 404, r
    assert other.delete(f"/session/{op_sid}").status == 204
    admin = Api(api.base_url, CANARY_ADMIN_TOKEN)
    seen = admin.get(f"/session/{op_sid}/status")
    assert seen.status == 200 and seen.json["owner"] == "ansible-a", seen
    assert admin.delete(f"/session/{op_sid}").status == 204
    assert operator.get(f"/session/{op_sid}/status").status == 404
    return {"session_id": sid, "bad_password": bad, "wrong_token": wrong_token, "op_session_id": op_sid}


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


def test_command_log_names_the_token(broker, traffic):
    for sid, name in ((traffic["session_id"], "default"), (traffic["op_session_id"], "ansible-a")):
        entries = [json.loads(line) for line in (broker.cmd_log_dir / f"{sid}.jsonl").read_text().splitlines()]
        assert entries and {e["by"] for e in entries} == {name}, entries
        assert all(CANARY_CMD_SECRET not in e["command"] for e in entries), entries


def test_audit_log(broker, traffic):
    """The audit_log file: 0640, one JSON object per state-changing request (refused ones too),
    naming the token, never holding one."""
    path = broker.audit_log
    assert path is not None and path.is_file(), path
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o640, f"audit log mode {oct(mode)}, want 0640"
    lines = path.read_text().splitlines()
    assert lines, "the audit log is empty"
    entries = [json.loads(line) for line in lines]
    for e in entries:
        assert set(e) == AUDIT_KEYS, e
        assert TS_RE.match(e["ts"]), e
        assert e["method"] not in ("GET", "HEAD", "OPTIONS"), e
        assert e["token"] in (None, "default", *NAMED_TOKENS), e
    op_sid = traffic["op_session_id"]
    seen = {(e["token"], e["role"], e["method"], e["route"], e["session_id"], e["status"]) for e in entries}
    for want in [
        (None, None, "DELETE", "/session/{id}", traffic["session_id"], 401),
        ("default", "admin", "POST", "/session", traffic["session_id"], 201),
        ("ansible-a", "operator", "POST", "/session", op_sid, 201),
        ("ansible-a", "operator", "POST", "/session/{id}/exec", op_sid, 200),
        ("noc", "viewer", "DELETE", "/session/{id}", op_sid, 403),
        ("ansible-b", "operator", "DELETE", "/session/{id}", op_sid, 204),
        ("automation", "admin", "DELETE", "/session/{id}", op_sid, 204),
    ]:
        assert want in seen, (want, entries[-20:])
    text = path.read_text()
    assert not [c for c in ALL_CANARIES if c in text], "a canary in the audit log"


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
    for must in ("stdout.txt", "stderr.txt", "broker.log", "audit.log", f"cmdlog/{traffic['session_id']}.jsonl",
                 f"cmdlog/{traffic['op_session_id']}.jsonl"):  # fmt: skip
        assert must in names, sorted(names)
    # Each named token was used (its name is in the audit log), so the scan covers its value.
    audit = broker.audit_log.read_text()
    for name in NAMED_TOKENS:
        assert f'"token":"{name}"' in audit, name
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
