"""Fixtures for the external suite: netdev-broker against software nobody here wrote.

* ``fakenos_device``: FakeNOS (PyPI ``fakenos``) started headless as ``fakenos -i inventory.yaml``
  with one ``cisco_ios`` host on a free 127.0.0.1 port (see fakenos-inventory.yaml).
* ``run_fakenos(inventory, workdir)``: one FakeNOS process for any inventory (test_11 starts
  one host per platform with it, each on its own free 127.0.0.1 port).
* ``broker``: the release binary ``target/release/netdev-broker`` on a free 127.0.0.1 port, with
  DEBUG logging to stdout *and* a log file, a command-log dir, an audit log, the API token passed
  through ``NETDEV_BROKER_API_TOKEN`` (never on the command line; it is the admin ``default``)
  and the named tokens of ``NAMED_TOKENS`` in ``api_tokens`` (only their SHA-256 in the file).

Every credential in the suite is a canary string; test_99_canary.py checks, after SIGTERM, that
none of them reached the broker's stdout, stderr, log file or command logs.

Network: 127.0.0.1 only. Every subprocess and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# ---------------------------------------------------------------------------------------------
# Canaries: credentials used throughout the suite. None may ever appear in a broker log.
# ---------------------------------------------------------------------------------------------
DEVICE_USERNAME = "netops"
CANARY_PASSWORD = "CANARY-pw-7f3a9"  # the FakeNOS device's real password
CANARY_TOKEN = "CANARY-tok-51c2"  # the broker's API token
CANARY_ENABLE_SECRET = "CANARY-en-3b8d"  # an enable secret (FakeNOS needs none; still a secret)
CANARY_WRONG_PASSWORD = "CANARY-badpw-c4e0"  # a rejected device password
CANARY_WRONG_TOKEN = "CANARY-badtok-92af"  # a rejected API token (a typo of a real one leaks too)
CANARY_CMD_SECRET = "CANARY-cmdpw-6d21"  # inside a command: masked in logs by default
# Named API tokens (config ``api_tokens``: the file holds only their SHA-256).
CANARY_OPERATOR_TOKEN = "CANARY-optok-a-4d1e"  # operator "ansible-a"
CANARY_OPERATOR2_TOKEN = "CANARY-optok-b-8b07"  # operator "ansible-b"
CANARY_ADMIN_TOKEN = "CANARY-admtok-e95c"  # admin "automation"
CANARY_VIEWER_TOKEN = "CANARY-viewtok-27fa"  # viewer "noc"

# name -> (role, token): the ``api_tokens`` of the ``broker`` fixture (see ``api_tokens``).
NAMED_TOKENS = {
    "ansible-a": ("operator", CANARY_OPERATOR_TOKEN),
    "ansible-b": ("operator", CANARY_OPERATOR2_TOKEN),
    "automation": ("admin", CANARY_ADMIN_TOKEN),
    "noc": ("viewer", CANARY_VIEWER_TOKEN),
}

ALL_CANARIES = (
    CANARY_PASSWORD,
    CANARY_TOKEN,
    CANARY_ENABLE_SECRET,
    CANARY_WRONG_PASSWORD,
    CANARY_WRONG_TOKEN,
    CANARY_CMD_SECRET,
    CANARY_OPERATOR_TOKEN,
    CANARY_OPERATOR2_TOKEN,
    CANARY_ADMIN_TOKEN,
    CANARY_VIEWER_TOKEN,
)


def api_tokens(*names: str) -> list[dict]:
    """The config's ``api_tokens`` entries for these ``NAMED_TOKENS`` (all of them if none is
    named): name, role and the SHA-256 of the token, as ``netdev-broker token new`` prints them."""
    return [
        {"name": n, "token_sha256": hashlib.sha256(NAMED_TOKENS[n][1].encode()).hexdigest(), "role": NAMED_TOKENS[n][0]}
        for n in (names or NAMED_TOKENS)
    ]

DEVICE_NAME = "SW-01"  # FakeNOS host name = its prompt base


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


def stop_process(proc: subprocess.Popen, sig: int, grace: float) -> Optional[int]:
    """Send ``sig`` to ``proc`` (our own child, by pid) and wait up to ``grace`` seconds.

    Returns the exit code, or None if it had to be killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        return None


# ---------------------------------------------------------------------------------------------
# FakeNOS
# ---------------------------------------------------------------------------------------------
@dataclass
class FakeDevice:
    host: str
    port: int
    username: str
    password: str
    name: str
    workdir: Path
    proc: subprocess.Popen


def _wait_for_ssh_banner(port: int, proc: subprocess.Popen, log: Path, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fakenos exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError as e:
            last_err = e
        time.sleep(0.2)
    raise RuntimeError(f"fakenos did not answer on 127.0.0.1:{port} in {deadline_s}s ({last_err}):\n{tail(log)}")


def fakenos_binary() -> Path:
    """The venv's ``fakenos``: the active venv's, the one next to this interpreter, the repo's."""
    candidates = [Path(sys.executable).parent / "fakenos", REPO / ".venv" / "bin" / "fakenos"]
    if os.environ.get("VIRTUAL_ENV"):
        candidates.insert(0, Path(os.environ["VIRTUAL_ENV"]) / "bin" / "fakenos")
    return next((c for c in candidates if c.exists()), Path("fakenos"))


def load_inventory(name: str) -> dict:
    """A FakeNOS inventory from this directory, every host checked to listen on loopback only."""
    inventory = yaml.safe_load((HERE / name).read_text())
    for host_name, host in inventory["hosts"].items():
        assert host["server"]["configuration"]["address"] == "127.0.0.1", host_name
    return inventory


@contextlib.contextmanager
def run_fakenos(inventory: dict, workdir: Path, deadline_s: float = 60) -> Iterator[subprocess.Popen]:
    """Start ONE headless ``fakenos -i inventory.yaml`` process serving every host of
    ``inventory`` (ports, usernames and passwords already filled in), wait until each host's SSH
    banner answers, stop it with SIGINT afterwards (its CLI shuts down cleanly on
    KeyboardInterrupt)."""
    for host_name, host in inventory["hosts"].items():
        assert host["server"]["configuration"]["address"] == "127.0.0.1", host_name
        assert host.get("port"), host_name
    inv_path = workdir / "inventory.yaml"
    inv_path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    log = workdir / "fakenos.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [str(fakenos_binary()), "-i", str(inv_path), "-l", "INFO"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + deadline_s
        for host in inventory["hosts"].values():
            _wait_for_ssh_banner(host["port"], proc, log, deadline_s=max(1.0, deadline - time.monotonic()))
        yield proc
    finally:
        stop_process(proc, signal.SIGINT, grace=15)


@pytest.fixture(scope="session")
def fakenos_device(tmp_path_factory) -> FakeDevice:
    workdir = tmp_path_factory.mktemp("fakenos")
    port = free_port()
    inventory = load_inventory("fakenos-inventory.yaml")
    host = inventory["hosts"][DEVICE_NAME]
    host.update(port=port, username=DEVICE_USERNAME, password=CANARY_PASSWORD)
    with run_fakenos(inventory, workdir, deadline_s=30) as proc:
        yield FakeDevice("127.0.0.1", port, DEVICE_USERNAME, CANARY_PASSWORD, DEVICE_NAME, workdir, proc)


# ---------------------------------------------------------------------------------------------
# HTTP client (stdlib only; every call has a timeout)
# ---------------------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def __repr__(self) -> str:  # shown by pytest on assertion failures
        return f"Response({self.status}, {self.content_type!r}, {self.body[:2000]!r})"


class Api:
    _DEFAULT = object()

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: Any = _DEFAULT,
        raw: Optional[bytes] = None,
        timeout: float = 120,
    ) -> Response:
        headers = {}
        token = self.token if token is self._DEFAULT else token
        if token is not None:
            headers["X-API-Token"] = token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get(self, path, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw) -> Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path, **kw) -> Response:
        return self.request("DELETE", path, **kw)

    def open_session(self, device: "FakeDevice", **extra) -> str:
        body = {"host": device.host, "username": device.username, "password": device.password, "port": device.port}
        body.update(extra)
        r = self.post("/session", body)
        assert r.status == 201, r
        return r.json["session_id"]


# ---------------------------------------------------------------------------------------------
# The broker
# ---------------------------------------------------------------------------------------------
@dataclass
class Broker:
    base_url: str
    port: int
    workdir: Path
    config_path: Path
    log_file: Path
    cmd_log_dir: Path
    stdout_path: Path
    stderr_path: Path
    proc: subprocess.Popen
    api: Api
    exit_code: Optional[int] = None
    stopped: bool = False
    stop_seconds: Optional[float] = None
    opened_sessions: list = field(default_factory=list)
    audit_log: Optional[Path] = None

    def stop(self, grace: float = 10.0) -> Optional[int]:
        """SIGTERM, wait up to ``grace`` s. Returns the exit code, None if it had to be killed."""
        if not self.stopped:
            t0 = time.monotonic()
            self.exit_code = stop_process(self.proc, signal.SIGTERM, grace)
            self.stop_seconds = time.monotonic() - t0
            self.stopped = True
        return self.exit_code

    def diagnostics(self) -> str:
        return (
            f"--- broker stderr (tail) ---\n{tail(self.stderr_path)}\n"
            f"--- broker log file (tail) ---\n{tail(self.log_file)}"
        )


def broker_binary() -> Path:
    path = Path(os.environ.get("NETDEV_BROKER_BIN", REPO / "target" / "release" / "netdev-broker"))
    if not path.exists():
        pytest.exit(f"broker binary {path} not found: run `cargo build --release` first", returncode=3)
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Broker:
    workdir = tmp_path_factory.mktemp("broker")
    port = free_port()
    cmd_log_dir = workdir / "cmdlog"
    cmd_log_dir.mkdir()
    state_dir = workdir / "state"
    state_dir.mkdir()
    log_file = workdir / "broker.log"
    audit_log = workdir / "audit.log"
    config = {
        "host": "127.0.0.1",
        "port": port,
        # api_token deliberately absent: it comes from NETDEV_BROKER_API_TOKEN.
        "api_tokens": api_tokens(),
        "audit_log": str(audit_log),
        "log_level": "DEBUG",  # DEBUG is where leaks would show
        "log_mode": "both",
        "log_file": str(log_file),
        "session_timeout": 300,
        "stale_reaper": True,
        "reaper_interval": 60,
        "cmd_log_dir": str(cmd_log_dir),
        "command_timeout": 60,  # FakeNOS adds ~10 ms per input byte
        "state_dir": str(state_dir),
    }
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETDEV_BROKER_")}
    env["NETDEV_BROKER_API_TOKEN"] = CANARY_TOKEN
    env.setdefault("RUST_BACKTRACE", "1")
    argv = [
        str(broker_binary()),
        "serve",
        "--config",
        str(config_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    stdout_path, stderr_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    base_url = f"http://127.0.0.1:{port}"
    b = Broker(
        base_url,
        port,
        workdir,
        config_path,
        log_file,
        cmd_log_dir,
        stdout_path,
        stderr_path,
        proc,
        Api(base_url, CANARY_TOKEN),
        audit_log=audit_log,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"broker exited with {proc.returncode} during start-up\n{b.diagnostics()}")
            try:
                r = b.api.get("/health", token=None, timeout=2)
                if r.status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker did not answer GET /health within 10 s\n{b.diagnostics()}")
            time.sleep(0.1)
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def api(broker) -> Api:
    return broker.api


def normalise(text: str) -> str:
    """Line endings and trailing whitespace only: CRLF/CR -> LF, rstrip every line, drop
    trailing empty lines. Leading blank lines and inner blank lines are kept."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip("\n")


# ---------------------------------------------------------------------------------------------
# More brokers, each with a config of its own (test_26: host-key policy, key_dir, allow-lists)
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def run_broker(
    workdir: Path,
    extra_config: Optional[dict] = None,
    deadline_s: float = 10,
    *,
    env_api_token: Optional[str] = CANARY_TOKEN,
    api_as: Optional[str] = None,
) -> Iterator[Broker]:
    """One more broker, started exactly as the ``broker`` fixture starts its own (DEBUG log to
    stdout and a log file, command-log dir, state_dir, token from the environment), with
    ``extra_config`` merged into its config file. Stopped with SIGTERM afterwards (unless the
    test already stopped it).

    ``env_api_token``: the ``NETDEV_BROKER_API_TOKEN`` it gets (None: none; then the config needs
    ``api_tokens``); ``api_as``: the token of its ``api`` (default: ``env_api_token``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd_log_dir = workdir / "cmdlog"
    cmd_log_dir.mkdir(exist_ok=True)
    state_dir = workdir / "state"
    state_dir.mkdir(exist_ok=True)
    log_file = workdir / "broker.log"
    config = {
        "host": "127.0.0.1",
        "port": port,
        "log_level": "DEBUG",
        "log_mode": "both",
        "log_file": str(log_file),
        "session_timeout": 300,
        "stale_reaper": True,
        "reaper_interval": 60,
        "cmd_log_dir": str(cmd_log_dir),
        "command_timeout": 60,
        "state_dir": str(state_dir),
    }
    config.update(extra_config or {})
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETDEV_BROKER_")}
    if env_api_token is not None:
        env["NETDEV_BROKER_API_TOKEN"] = env_api_token
    env.setdefault("RUST_BACKTRACE", "1")
    argv = [str(broker_binary()), "serve", "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)]
    stdout_path, stderr_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    base_url = f"http://127.0.0.1:{port}"
    b = Broker(
        base_url, port, workdir, config_path, log_file, cmd_log_dir, stdout_path, stderr_path, proc,
        Api(base_url, api_as or env_api_token or ""), audit_log=config.get("audit_log") and Path(config["audit_log"]),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"broker exited with {proc.returncode} during start-up\n{b.diagnostics()}")
            try:
                if b.api.get("/health", token=None, timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker did not answer GET /health within {deadline_s} s\n{b.diagnostics()}")
            time.sleep(0.1)
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def broker_factory(tmp_path_factory):
    """``start(name, **config)`` -> a running :class:`Broker` with those config keys added to the
    standard ones (``env_api_token=``/``api_as=`` as :func:`run_broker` takes them);
    ``start.started`` lists every broker started. All are stopped (SIGTERM) when the module ends;
    their work dirs stay for a canary scan."""
    with contextlib.ExitStack() as stack:

        def start(name: str, *, env_api_token: Optional[str] = CANARY_TOKEN, api_as: Optional[str] = None,
                  **extra) -> Broker:  # fmt: skip
            b = stack.enter_context(run_broker(tmp_path_factory.mktemp(f"broker-{name}"), extra,
                                               env_api_token=env_api_token, api_as=api_as))  # fmt: skip
            start.started.append(b)
            return b

        start.started = []
        yield start
