"""ansible-core runs the seed's safety-session tasks (ansible/safety_session.yml) with
ansible.builtin.uri against the broker and the FakeNOS device.

Hermetic: ANSIBLE_HOME, HOME, local temp dirs and the config file all live under the test's
tmp dir; no host key checking, no retry files, no colour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CANARY_PASSWORD, CANARY_TOKEN

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "ansible" / "safety_session.yml"


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
    proc = run([ansible_bin("ansible-playbook"), "-i", str(inv), "--syntax-check", str(PLAYBOOK)],
               ansible_env, tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_seed_safety_session_playbook(broker, fakenos_device, ansible_env, tmp_path):
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
    # Credentials in an extra-vars file (0600), as a vault file would hold them; never on argv.
    secrets = tmp_path / "vars.json"
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "broker_url": broker.base_url,
                "broker_token": broker.api.token,
                "local_user": fakenos_device.username,
                "local_pass": fakenos_device.password,
                "exec_timeout": "60",
            },
            f,
        )
    proc = run(
        [ansible_bin("ansible-playbook"), "-i", str(inv), "-e", f"@{secrets}", str(PLAYBOOK)],
        ansible_env,
        tmp_path,
        timeout=600,
    )
    print(proc.stdout)
    print(proc.stderr)
    assert proc.returncode == 0, f"ansible-playbook failed:\n{proc.stdout}\n{proc.stderr}\n{broker.diagnostics()}"
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
    assert "ok=" in proc.stdout and "sw01" in proc.stdout
    # no_log: true on the task carrying credentials keeps them out of Ansible's own output.
    assert CANARY_PASSWORD not in proc.stdout + proc.stderr
    assert CANARY_TOKEN not in proc.stdout + proc.stderr
