"""ansible-core runs the seed's safety-session tasks (ansible/safety_session.yml) with
ansible.builtin.uri against the broker and the FakeNOS device, with a named ``operator`` token
(``api_tokens``, not the single ``api_token``). Then ansible/foreign_session.yml: another
operator's token neither sees nor uses the first one's safety session (404 for status and exec,
204 for a DELETE that closes nothing, GET /sessions without it), every request with an
X-Request-ID the answers echo; the audit log records those requests under the second token's
name with the playbook's request ids.

Hermetic: ANSIBLE_HOME, HOME, local temp dirs and the config file all live under the test's
tmp dir; no host key checking, no retry files, no colour."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ALL_CANARIES, CANARY_OPERATOR2_TOKEN, CANARY_OPERATOR_TOKEN, NAMED_TOKENS

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "ansible" / "safety_session.yml"
FOREIGN_PLAYBOOK = HERE / "ansible" / "foreign_session.yml"
# The two operators (conftest.NAMED_TOKENS: the broker fixture's api_tokens).
FIRST, SECOND = "ansible-a", "ansible-b"
assert NAMED_TOKENS[FIRST] == ("operator", CANARY_OPERATOR_TOKEN)
assert NAMED_TOKENS[SECOND] == ("operator", CANARY_OPERATOR2_TOKEN)


def ansible_bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


@pytest.fixture()
def ansible_env(tmp_path) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")  # an explicit, empty config: nothing from cwd, ~ or /etc
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        HOME=str(home),
        ANSIBLE_CONFIG=str(cfg),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local-tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote-tmp"),
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_GATHERING="explicit",
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
        ANSIBLE_ROLES_PATH=str(tmp_path / "roles"),
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_TIMEOUT="30",
    )
    return env


def run(argv: list[str], env: dict, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


def test_playbook_syntax(ansible_env, tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"devices": {"hosts": {"sw01": None}}}}}))
    proc = run([ansible_bin("ansible-playbook"), "-i", str(inv), "--syntax-check", str(PLAYBOOK), str(FOREIGN_PLAYBOOK)],
               ansible_env, tmp_path, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def write_inventory(tmp_path: Path, fakenos_device) -> Path:
    inventory = {
        "all": {
            "children": {
                "devices": {
                    "hosts": {
                        "sw01": {
                            "ansible_host": fakenos_device.host,  # 127.0.0.1
                            "fakenos_port": str(fakenos_device.port),  # a string on purpose
                        }
                    }
                }
            }
        }
    }
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(inventory))
    return inv


def play(playbook: Path, inv: Path, extra_vars: dict, ansible_env: dict, tmp_path: Path, broker) -> str:
    """ansible-playbook with ``extra_vars`` in a 0600 file (as a vault file would hold them;
    never on argv); its output, checked: the play passed and no canary is in Ansible's output."""
    vars_file = tmp_path / f"vars-{playbook.stem}.json"
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(extra_vars, f)
    proc = run(
        [ansible_bin("ansible-playbook"), "-i", str(inv), "-e", f"@{vars_file}", str(playbook)],
        ansible_env,
        tmp_path,
        timeout=600,
    )
    print(proc.stdout)
    print(proc.stderr)
    assert proc.returncode == 0, f"ansible-playbook failed:\n{proc.stdout}\n{proc.stderr}\n{broker.diagnostics()}"
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
    assert "ok=" in proc.stdout and "sw01" in proc.stdout
    # no_log: true on the tasks carrying credentials keeps them out of Ansible's own output.
    leaks = [c for c in ALL_CANARIES if c in proc.stdout + proc.stderr]
    assert not leaks, leaks
    return proc.stdout


def audit_lines(broker, since: int) -> list[dict]:
    with open(broker.audit_log, "rb") as f:
        f.seek(since)
        return [json.loads(line) for line in f.read().decode().splitlines()]


def test_seed_safety_session_playbook(broker, fakenos_device, ansible_env, tmp_path):
    """The seed README's flow with an operator token from api_tokens."""
    inv = write_inventory(tmp_path, fakenos_device)
    audit_start = broker.audit_log.stat().st_size
    play(
        PLAYBOOK,
        inv,
        {
            "broker_url": broker.base_url,
            "broker_token": CANARY_OPERATOR_TOKEN,
            "local_user": fakenos_device.username,
            "local_pass": fakenos_device.password,
            "exec_timeout": "60",
        },
        ansible_env,
        tmp_path,
        broker,
    )
    # The broker knew it as the operator: every state-changing request under its name, and its
    # commands in the command log as run by it.
    audit = audit_lines(broker, audit_start)
    assert [(a["method"], a["route"], a["status"]) for a in audit] == (
        [("POST", "/session", 201)] + [("POST", "/session/{id}/exec", 200)] * 4 + [("DELETE", "/session/{id}", 204)]
    ), audit
    assert {(a["token"], a["role"]) for a in audit} == {(FIRST, "operator")}, audit
    sid = audit[0]["session_id"]
    assert {a["session_id"] for a in audit} == {sid}, audit
    commands = [json.loads(line) for line in (broker.cmd_log_dir / f"{sid}.jsonl").read_text().splitlines()]
    assert commands and {c["by"] for c in commands} == {FIRST}, commands


def test_another_operator_cannot_see_or_use_the_safety_session(broker, fakenos_device, ansible_env, tmp_path):
    inv = write_inventory(tmp_path, fakenos_device)
    run_id = f"t30-{secrets.token_hex(4)}"
    audit_start = broker.audit_log.stat().st_size
    try:
        play(
            FOREIGN_PLAYBOOK,
            inv,
            {
                "broker_url": broker.base_url,
                "first_token": CANARY_OPERATOR_TOKEN,
                "first_name": FIRST,
                "broker_token": CANARY_OPERATOR2_TOKEN,
                "local_user": fakenos_device.username,
                "local_pass": fakenos_device.password,
                "run_id": run_id,
            },
            ansible_env,
            tmp_path,
            broker,
        )
    finally:
        # A failed play may leave the operators' sessions open: the admin token closes them.
        for s in broker.api.get("/sessions").json["sessions"]:
            if s["owner"] in (FIRST, SECOND):
                broker.api.delete(f"/session/{s['session_id']}")
    # The audit log has the playbook's request ids, under the token each request was made with.
    audit = {a["request_id"]: a for a in audit_lines(broker, audit_start)}
    first_sid = audit[f"{run_id}.first.open"]["session_id"]
    want = {
        f"{run_id}.first.open": (FIRST, "POST", "/session", 201),
        f"{run_id}.second.open": (SECOND, "POST", "/session", 201),
        f"{run_id}.second.exec-on-first": (SECOND, "POST", "/session/{id}/exec", 404),
        f"{run_id}.second.delete-first": (SECOND, "DELETE", "/session/{id}", 204),
        f"{run_id}.second.close-own": (SECOND, "DELETE", "/session/{id}", 204),
        f"{run_id}.first.exec": (FIRST, "POST", "/session/{id}/exec", 200),
        f"{run_id}.first.close": (FIRST, "DELETE", "/session/{id}", 204),
    }
    got = {rid: (a["token"], a["method"], a["route"], a["status"]) for rid, a in audit.items() if rid in want}
    assert got == want, audit
    for rid in ("exec-on-first", "delete-first"):
        assert audit[f"{run_id}.second.{rid}"]["session_id"] == first_sid, audit
    # Only the first operator's own close closed the session, in the log under its request id.
    log = broker.log_file.read_text(errors="replace").splitlines()
    closes = [line for line in log if f"session {first_sid} " in line and "closed by API token" in line]
    assert len(closes) == 1 and f'req={run_id}.first.close ' in closes[0] and f'"{FIRST}"' in closes[0], closes
    # The open's id labels the open's lines, not the session's life after it (its close).
    opened = [line for line in log if f"req={run_id}.first.open " in line]
    assert opened and not [line for line in opened if "closed" in line or "closing" in line], opened
