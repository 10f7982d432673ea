"""Telnet against a real Telnet server: BusyBox ``telnetd`` (Debian ``busybox-static``).

BusyBox telnetd does the Telnet protocol (its own option negotiation: DO ECHO, DO NAWS, WILL
ECHO, WILL SUPPRESS-GO-AHEAD; NAWS applied to the pty; CR LF / CR NUL from the client) and runs
``telnet_device.py`` on a pty for each connection: a Cisco IOS-XE router "R1" as a transcript
shows it (banner, ``Username:``/``Password:`` with echo off, ``R1>``, ``enable``, ``--More--``
paging, config mode, ``copy``/``write``, IOS error texts). Started as

    busybox telnetd -F -K -b 127.0.0.1:PORT -l WRAPPER -f /dev/null

(foreground, loopback only, close the connection when the program exits; WRAPPER is a tiny sh
script exec'ing this venv's python on telnet_device.py; credentials reach it through the
environment, never argv).

1. Self-check, broker-free: a minimal raw-socket Telnet client written here (refuses every option
   with WONT/DONT) logs in through telnetd and walks the device; Netmiko's ``cisco_ios_telnet``
   logs in too and gives the reference outputs (Netmiko's send_command).
2. The broker's Telnet API (docs/api.md "SSH and Telnet", the seed's POST /telnet-session contract): open
   (201/401/502/504), status, exec (outputs = Netmiko's), the interactive form, config blocks,
   device refusals, paging when ``terminal length 0`` is refused, DELETE, ids shared with
   /session, the line-password-only device, ``*_telnet`` device types.
3. ``netdev-broker telnet-debug``: stages printed, exit codes, no secret in its output.

Every credential is a conftest canary; test_99_canary.py scans the broker's outputs for them, and
the last test here checks the device's own event log (and that no password was ever typed at a
command prompt). Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest
from conftest import (
    CANARY_ENABLE_SECRET,
    CANARY_PASSWORD,
    CANARY_WRONG_PASSWORD,
    DEVICE_USERNAME,
    broker_binary,
    free_port,
    normalise,
    stop_process,
    tail,
)

import telnet_device as dev

HERE = Path(__file__).resolve().parent
DEVICE_PROGRAM = HERE / "telnet_device.py"
HOSTNAME = "R1"
SECRETS = (CANARY_PASSWORD, CANARY_ENABLE_SECRET, CANARY_WRONG_PASSWORD)
OPEN_TIMEOUT = 20  # the broker's own open deadline (body "timeout")
HTTP_TIMEOUT = 90  # the client's deadline for one HTTP call

# Telnet (RFC 854) bytes
IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
OPT_ECHO, OPT_SGA, OPT_NAWS = 1, 3, 31


# ---------------------------------------------------------------------------------------------
# busybox telnetd + the device program
# ---------------------------------------------------------------------------------------------
def busybox_with_telnetd() -> str:
    """Debian's busybox-static has telnetd; the plain busybox package does not."""
    candidates = [shutil.which("busybox") or "", "/bin/busybox", "/usr/bin/busybox"]
    for path in dict.fromkeys(c for c in candidates if c):
        if not os.access(path, os.X_OK):
            continue
        try:
            listed = subprocess.run([path, "--list"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "telnetd" in listed.split():
            return path
    pytest.fail("no busybox with telnetd: install busybox-static (.ci/run does)")


def listening(port: int) -> bool:
    """127.0.0.1:port in LISTEN state (/proc/net/tcp), without connecting: a probe connection
    would start a device session."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    want = f"0100007F:{port:04X}"
    return any(f.split()[1] == want and f.split()[3] == "0A" for f in lines if len(f.split()) > 3)


@dataclass
class TelnetDevice:
    host: str
    port: int
    username: str
    password: str
    enable_secret: str
    login: str
    workdir: Path
    log_path: Path
    telnetd_log: Path
    proc: subprocess.Popen

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def diagnostics(self) -> str:
        return (
            f"--- device event log (tail) ---\n{tail(self.log_path)}\n"
            f"--- telnetd output (tail) ---\n{tail(self.telnetd_log)}"
        )


@contextlib.contextmanager
def run_telnetd(workdir: Path, *, login: str = "local", authz_deny: str = "") -> Iterator[TelnetDevice]:
    workdir.mkdir(parents=True, exist_ok=True)
    busybox = busybox_with_telnetd()
    wrapper = workdir / "device.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {shlex.quote(sys.executable)} {shlex.quote(str(DEVICE_PROGRAM))} --login {login}\n"
    )
    wrapper.chmod(0o755)
    log_path = workdir / "device-events.log"
    telnetd_log = workdir / "telnetd.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELNET_DEVICE_")}
    env.update(
        TELNET_DEVICE_USERNAME=DEVICE_USERNAME,
        TELNET_DEVICE_PASSWORD=CANARY_PASSWORD,
        TELNET_DEVICE_ENABLE_SECRET=CANARY_ENABLE_SECRET,
        TELNET_DEVICE_HOSTNAME=HOSTNAME,
        TELNET_DEVICE_LOG=str(log_path),
        TELNET_DEVICE_AUTHZ_DENY=authz_deny,
        TELNET_DEVICE_IDLE_TIMEOUT="300",
    )
    port = free_port()
    argv = [busybox, "telnetd", "-F", "-K", "-b", f"127.0.0.1:{port}", "-l", str(wrapper), "-f", "/dev/null"]
    with open(telnetd_log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    device = TelnetDevice(
        "127.0.0.1", port, DEVICE_USERNAME, CANARY_PASSWORD, CANARY_ENABLE_SECRET, login, workdir, log_path, telnetd_log, proc
    )
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if proc.poll() is not None:
                raise RuntimeError(f"telnetd exited with {proc.returncode}: {' '.join(argv)}\n{device.diagnostics()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"telnetd not listening on 127.0.0.1:{port} after 10 s\n{device.diagnostics()}")
            time.sleep(0.05)
        yield device
    finally:
        # telnetd's death closes every pty master: each device program gets EOF/EIO and exits.
        stop_process(proc, signal.SIGTERM, grace=5)


@pytest.fixture(scope="module")
def telnet_dev(tmp_path_factory) -> Iterator[TelnetDevice]:
    with run_telnetd(tmp_path_factory.mktemp("telnetd-local")) as d:
        yield d


@pytest.fixture(scope="module")
def line_dev(tmp_path_factory) -> Iterator[TelnetDevice]:
    with run_telnetd(tmp_path_factory.mktemp("telnetd-line"), login="line") as d:
        yield d


@pytest.fixture(scope="module")
def authz_dev(tmp_path_factory) -> Iterator[TelnetDevice]:
    """`terminal length` refused, as under AAA command authorization: output pages."""
    with run_telnetd(tmp_path_factory.mktemp("telnetd-authz"), authz_deny="terminal length") as d:
        yield d


# ---------------------------------------------------------------------------------------------
# A minimal raw-socket Telnet client (refuses every option)
# ---------------------------------------------------------------------------------------------
class RawTelnet:
    def __init__(self, host: str, port: int, timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.data = bytearray()  # received bytes, Telnet commands removed
        self.pos = 0  # consumed up to here
        self.options: list = []  # (command, option) received
        self.closed = False
        self._state = "data"
        self._cmd = 0

    def _feed(self, chunk: bytes) -> None:
        for b in chunk:
            st = self._state
            if st == "data":
                if b == IAC:
                    self._state = "iac"
                else:
                    self.data.append(b)
            elif st == "iac":
                if b == IAC:
                    self.data.append(IAC)
                    self._state = "data"
                elif b in (DO, DONT, WILL, WONT):
                    self._cmd, self._state = b, "opt"
                elif b == SB:
                    self._state = "sb"
                else:
                    self._state = "data"  # NOP, GA, ...
            elif st == "opt":
                self.options.append((self._cmd, b))
                if self._cmd == DO:
                    self.sock.sendall(bytes([IAC, WONT, b]))
                elif self._cmd == WILL:
                    self.sock.sendall(bytes([IAC, DONT, b]))
                self._state = "data"
            elif st == "sb":
                if b == IAC:
                    self._state = "sb_iac"
            elif st == "sb_iac":
                self._state = "data" if b == SE else "sb"

    def _recv(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or self.closed:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(4096)
        except socket.timeout:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self._feed(chunk)
        return True

    def read_until(self, expected, timeout: float = 10) -> bytes:
        """Bytes from the last read up to and including ``expected`` (bytes or a compiled
        regex)."""
        deadline = time.monotonic() + timeout
        while True:
            if isinstance(expected, bytes):
                i = self.data.find(expected, self.pos)
                end = i + len(expected) if i >= 0 else -1
            else:
                m = expected.search(bytes(self.data), self.pos)
                end = m.end() if m else -1
            if end >= 0:
                out = bytes(self.data[self.pos : end])
                self.pos = end
                return out
            if not self._recv(deadline):
                if self.closed or time.monotonic() >= deadline:
                    raise AssertionError(
                        f"waited {timeout}s for {expected!r} ({'closed' if self.closed else 'timeout'}); "
                        f"got {bytes(self.data[self.pos:])!r}"
                    )

    def wait_closed(self, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._recv(deadline)
        assert self.closed, f"connection still open after {timeout}s; got {bytes(self.data[self.pos:])!r}"
        out = bytes(self.data[self.pos :])
        self.pos = len(self.data)
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data.replace(bytes([IAC]), bytes([IAC, IAC])))

    def sendline(self, text: str) -> None:
        self.send(text.encode() + b"\r\n")

    def cmd(self, text: str, until: bytes = b"R1#", timeout: float = 10) -> bytes:
        """Send a command line; return what came back up to ``until`` (echo included)."""
        self.sendline(text)
        return self.read_until(until, timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def crlf_only(data: bytes) -> bool:
    return re.search(rb"(?<!\r)\n", data) is None


def text_of(data: bytes) -> str:
    """Device bytes as text with LF line ends (for comparing with telnet_device's content)."""
    return data.decode().replace("\r\n", "\n")


def invalid_reply(prompt: str, command: str, pos: int) -> bytes:
    caret = " " * (len(prompt) + pos) + "^"
    return f"{command}\r\n{caret}\r\n{dev.INVALID}\r\n\r\n{prompt}".encode()


@contextlib.contextmanager
def raw_login(d: TelnetDevice, enable: bool = True) -> Iterator[RawTelnet]:
    t = RawTelnet(d.host, d.port)
    try:
        t.read_until(b"Username: ")
        t.sendline(d.username)
        t.read_until(b"Password: ")
        t.sendline(d.password)
        t.read_until(b"R1>")
        if enable:
            t.cmd("enable", b"Password: ")
            t.sendline(d.enable_secret)
            t.read_until(b"R1#")
        yield t
    finally:
        t.close()


# ---------------------------------------------------------------------------------------------
# 1. Self-check of telnetd + device, no broker involved
# ---------------------------------------------------------------------------------------------
def test_device_selfcheck_session(telnet_dev):
    d = telnet_dev
    t = RawTelnet(d.host, d.port)
    try:
        head = t.read_until(b"Username: ")
        # telnetd negotiated (we refused): proof a real Telnet server is in between.
        assert (WILL, OPT_ECHO) in t.options and (DO, OPT_NAWS) in t.options, t.options
        assert b"Unauthorized access to this device is prohibited!" in head, head
        assert head.endswith(b"\r\n\r\nUser Access Verification\r\n\r\nUsername: "), head
        t.sendline(d.username)
        assert t.read_until(b"Password: ") == f"{d.username}\r\nPassword: ".encode()
        t.sendline(d.password)
        got = t.read_until(b"R1>")
        assert got == b"\r\n\r\nR1>", got  # the password is not echoed
        clock = t.cmd("show clock", b"R1>")
        assert clock.startswith(b"show clock\r\n") and clock.endswith(b"\r\nR1>"), clock
        assert dev.CLOCK_RE.match(clock.decode().split("\r\n")[1]), clock
        # user mode has no show running-config
        assert t.cmd("show running-config", b"R1>") == invalid_reply("R1>", "show running-config", 5)

        assert t.cmd("enable", b"Password: ") == b"enable\r\nPassword: "
        t.sendline(d.enable_secret)
        assert t.read_until(b"R1#") == b"\r\nR1#"

        # --More-- at 23 lines (terminal length 24); space continues, the pager is erased.
        first = t.cmd("show version", dev.MORE.encode())
        lines = first.split(b"\r\n")
        assert lines[0] == b"show version" and lines[-1] == dev.MORE.encode(), first
        assert len(lines) - 2 == 23, lines
        t.send(b" ")
        rest = t.read_until(b"R1#")
        assert rest.startswith(dev.MORE_ERASE.encode()), rest
        shown = first[len(b"show version\r\n") : -len(dev.MORE)] + rest[len(dev.MORE_ERASE) : -len(b"R1#")]
        assert text_of(shown) == dev.show_version(), shown
        # q stops the pager: the rest is never sent
        page = t.cmd("show running-config", dev.MORE.encode())
        assert b"Building configuration..." in page
        t.send(b"q")
        assert t.read_until(b"R1#") == dev.MORE_ERASE.encode() + b"R1#"
        # terminal length 0: no pager
        assert t.cmd("terminal length 0") == b"terminal length 0\r\nR1#"
        assert t.cmd("terminal width 511") == b"terminal width 511\r\nR1#"
        full = t.cmd("show running-config")
        assert dev.MORE.encode() not in full
        running = dev.show_running_config(HOSTNAME, dev.initial_interfaces(), [])
        assert text_of(full) == "show running-config\n" + running + "R1#"
        brief = t.cmd("show ip interface brief")
        assert text_of(brief) == "show ip interface brief\n" + dev.show_ip_interface_brief(dev.initial_interfaces()) + "R1#"
        # IOS error texts
        assert t.cmd("show nonsense") == invalid_reply("R1#", "show nonsense", 5)
        assert t.cmd("frobnicate now") == invalid_reply("R1#", "frobnicate now", 0)
        assert t.cmd("show") == b"show\r\n% Incomplete command.\r\n\r\nR1#"
        # configuration
        assert t.cmd("configure terminal", b"R1(config)#") == (
            b"configure terminal\r\nEnter configuration commands, one per line.  End with CNTL/Z.\r\nR1(config)#"
        )
        assert t.cmd("interface Gi1", b"R1(config-if)#") == b"interface Gi1\r\nR1(config-if)#"
        assert t.cmd("description selfcheck via telnetd", b"R1(config-if)#").endswith(b"\r\nR1(config-if)#")
        assert t.cmd("bogus", b"R1(config-if)#") == invalid_reply("R1(config-if)#", "bogus", 0)
        assert t.cmd("end") == b"end\r\nR1#"
        assert b" description selfcheck via telnetd\r\n" in t.cmd("show running-config")
        assert t.cmd("write memory") == b"write memory\r\nBuilding configuration...\r\n[OK]\r\nR1#"
        assert t.cmd("copy running-config startup-config", b"? ") == (
            b"copy running-config startup-config\r\nDestination filename [startup-config]? "
        )
        assert t.cmd("") == b"\r\nBuilding configuration...\r\n[OK]\r\nR1#"
        assert t.cmd("reload", b"[confirm]") == b"reload\r\nProceed with reload? [confirm]"
        t.send(b"n")  # cancels
        assert t.read_until(b"R1#") == b"\r\nR1#"
        t.sendline("exit")
        assert t.wait_closed() == b"exit\r\n"
        assert crlf_only(bytes(t.data)), "a bare LF: the pty should turn every LF into CR LF"
    finally:
        t.close()


def test_device_selfcheck_refusals(telnet_dev):
    d = telnet_dev
    # wrong enable secret
    with raw_login(d, enable=False) as t:
        t.cmd("enable", b"Password: ")
        t.sendline(CANARY_WRONG_PASSWORD)
        assert t.read_until(b"R1>") == b"\r\n% Access denied\r\n\r\nR1>"
        assert t.cmd("configure terminal", b"R1>") == invalid_reply("R1>", "configure terminal", 0)
    # wrong password: % Login invalid, Username: again; closed after 3 failures
    t = RawTelnet(d.host, d.port)
    try:
        t.read_until(b"Username: ")
        for attempt in range(3):
            t.sendline(d.username)
            t.read_until(b"Password: ")
            t.sendline(CANARY_WRONG_PASSWORD)
            if attempt < 2:
                got = t.read_until(b"Username: ")
                assert got == b"\r\n% Login invalid\r\n\r\nUsername: ", got
        assert t.wait_closed() == b"\r\n% Login invalid\r\n\r\n"
        assert CANARY_WRONG_PASSWORD.encode() not in t.data, "password echoed"
    finally:
        t.close()


def test_device_selfcheck_line_password(line_dev):
    d = line_dev
    t = RawTelnet(d.host, d.port)
    try:
        head = t.read_until(b"Password: ")
        assert b"Username" not in head and head.endswith(b"User Access Verification\r\n\r\nPassword: "), head
        t.sendline(CANARY_WRONG_PASSWORD)
        assert t.read_until(b"Password: ") == b"\r\nPassword: "
        t.sendline(d.password)
        assert t.read_until(b"R1>") == b"\r\n\r\nR1>"
        t.sendline("logout")
        assert t.wait_closed() == b"logout\r\n"
        for s in SECRETS:
            assert s.encode() not in t.data, "password echoed"
    finally:
        t.close()
    # three wrong line passwords: % Bad passwords, closed
    t = RawTelnet(d.host, d.port)
    try:
        for _ in range(3):
            t.read_until(b"Password: ")
            t.sendline(CANARY_WRONG_PASSWORD)
        assert t.wait_closed() == b"\r\n% Bad passwords\r\n"
    finally:
        t.close()


def test_device_selfcheck_authz_pages(authz_dev):
    with raw_login(authz_dev) as t:
        assert t.cmd("terminal length 0") == b"terminal length 0\r\nCommand authorization failed.\r\n\r\nR1#"
        assert dev.MORE.encode() in t.cmd("show running-config", dev.MORE.encode())
        t.send(b"q")
        t.read_until(b"R1#")


PARITY_COMMANDS = ["show version", "show ip interface brief", "show nonsense"]


@pytest.fixture(scope="module")
def netmiko_reference(telnet_dev) -> dict:
    """Netmiko's own Telnet driver through the same telnetd: the reference outputs."""
    from netmiko import ConnectHandler

    conn = ConnectHandler(
        device_type="cisco_ios_telnet",
        host=telnet_dev.host,
        port=telnet_dev.port,
        username=telnet_dev.username,
        password=telnet_dev.password,
        secret=telnet_dev.enable_secret,
        conn_timeout=20,
        auth_timeout=20,
        banner_timeout=20,
        timeout=30,
        session_log=None,
    )
    try:
        conn.enable()
        assert conn.find_prompt() == "R1#"
        return {cmd: conn.send_command(cmd, read_timeout=30) for cmd in PARITY_COMMANDS}
    finally:
        conn.disconnect()


def test_netmiko_reference_is_sane(netmiko_reference):
    assert normalise(netmiko_reference["show version"]) == normalise(dev.show_version())
    assert normalise(netmiko_reference["show ip interface brief"]) == normalise(
        dev.show_ip_interface_brief(dev.initial_interfaces())
    )
    assert dev.INVALID in netmiko_reference["show nonsense"]


# ---------------------------------------------------------------------------------------------
# 2. The broker's Telnet API
# ---------------------------------------------------------------------------------------------
def open_body(d: TelnetDevice, **extra) -> dict:
    body = {
        "host": d.host,
        "port": d.port,
        "username": d.username,
        "password": d.password,
        "enable_password": d.enable_secret,
        "timeout": OPEN_TIMEOUT,
    }
    body.update(extra)
    return body


@pytest.fixture(scope="module")
def opened(api) -> Iterator[list]:
    """Every session these tests open; DELETEd at the end (204 expected)."""
    ids: list = []
    yield ids
    for sid in ids:
        api.delete(f"/telnet-session/{sid}", timeout=HTTP_TIMEOUT)


def open_ok(api, opened, d: TelnetDevice, path: str = "/telnet-session", **extra) -> str:
    r = api.post(path, open_body(d, **extra), timeout=HTTP_TIMEOUT)
    assert r.status == 201, f"POST {path} -> {r}\n{d.diagnostics()}"
    assert set(r.json) >= {"session_id", "host"} and r.json["host"] == d.host, r
    opened.append(r.json["session_id"])
    return r.json["session_id"]


@pytest.fixture(scope="module")
def tsid(api, opened, telnet_dev) -> str:
    return open_ok(api, opened, telnet_dev)


def exec_ok(api, sid: str, body: dict, path: str = "/telnet-session") -> dict:
    r = api.post(f"{path}/{sid}/exec", body, timeout=HTTP_TIMEOUT)
    assert r.status == 200, f"POST {path}/{sid}/exec {body} -> {r}"
    return r.json


def assert_clean_output(cmd: str, out: str) -> None:
    assert "\r" not in out, (cmd, out)
    assert "\xff" not in out and "\ufffd" not in out, (cmd, out)  # no Telnet bytes
    assert "\b" not in out and "--More--" not in out, (cmd, out)
    assert not out.lstrip().startswith(cmd), f"echo left in: {out[:200]!r}"
    assert not out.rstrip().endswith(("R1#", "R1>")), f"prompt left in: {out[-200:]!r}"


def test_open_wrong_password_is_401(api, telnet_dev):
    r = api.post("/telnet-session", open_body(telnet_dev, password=CANARY_WRONG_PASSWORD), timeout=HTTP_TIMEOUT)
    assert r.status == 401, f"{r}\n{telnet_dev.diagnostics()}"
    assert isinstance(r.json.get("detail"), str), r


def test_open_wrong_enable_secret_is_401(api, telnet_dev):
    r = api.post("/telnet-session", open_body(telnet_dev, enable_password=CANARY_WRONG_PASSWORD), timeout=HTTP_TIMEOUT)
    assert r.status == 401, f"{r}\n{telnet_dev.diagnostics()}"


def test_open_refused_port_is_502(api):
    port = free_port()  # nothing listens there
    body = {"host": "127.0.0.1", "port": port, "username": DEVICE_USERNAME, "password": CANARY_PASSWORD, "timeout": 10}
    r = api.post("/telnet-session", body, timeout=HTTP_TIMEOUT)
    assert r.status == 502, r


@contextlib.contextmanager
def tcp_server(behaviour: str) -> Iterator[int]:
    """'silent': accepts and never sends a byte; 'drop': accepts and closes at once."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()
    held: list = []

    def loop():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except (socket.timeout, OSError):
                continue
            if behaviour == "drop":
                c.close()
            else:
                held.append(c)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        th.join(timeout=5)
        for c in held:
            c.close()
        srv.close()


def test_open_silent_server_is_504(api):
    with tcp_server("silent") as port:
        body = {"host": "127.0.0.1", "port": port, "username": DEVICE_USERNAME, "password": CANARY_PASSWORD, "timeout": 3}
        t0 = time.monotonic()
        r = api.post("/telnet-session", body, timeout=HTTP_TIMEOUT)
        dt = time.monotonic() - t0
    assert r.status == 504, r
    assert 2.5 <= dt < 20, f"504 after {dt:.1f}s for a 3 s open timeout"


def test_open_dropping_server_is_502(api):
    with tcp_server("drop") as port:
        body = {"host": "127.0.0.1", "port": port, "username": DEVICE_USERNAME, "password": CANARY_PASSWORD, "timeout": 10}
        r = api.post("/telnet-session", body, timeout=HTTP_TIMEOUT)
    assert r.status == 502, r


def test_status(api, tsid, telnet_dev):
    r = api.get(f"/telnet-session/{tsid}/status", timeout=HTTP_TIMEOUT)
    assert r.status == 200, r
    s = r.json
    assert s["session_id"] == tsid, s
    assert s["protocol"] == "telnet", s
    assert s["mode"] == "enable", s
    assert s["alive"] is True, s
    assert s["host"] == telnet_dev.host and s["port"] == telnet_dev.port, s
    assert s["username"] == DEVICE_USERNAME, s
    assert s["device_type"] == "cisco_ios", s
    for key in ("created_at", "last_used", "age_seconds", "idle_seconds"):
        assert key in s, (key, s)
    assert isinstance(s.get("algorithms"), str) and s["algorithms"], s
    for secret in SECRETS:
        assert secret not in r.body.decode(), "a secret in the status"
    # ids are shared across protocols
    r2 = api.get(f"/session/{tsid}/status", timeout=HTTP_TIMEOUT)
    assert r2.status == 200, r2
    assert r2.json["session_id"] == tsid and r2.json["protocol"] == "telnet", r2


def test_exec_outputs_are_netmikos(api, tsid, netmiko_reference):
    cmds = ["show version", "show ip interface brief"]
    j = exec_ok(api, tsid, {"commands": cmds})
    assert [x["command"] for x in j["results"]] == cmds, j
    for cmd in cmds:
        out = j["outputs"][cmd]
        assert_clean_output(cmd, out)
        assert normalise(out) == normalise(netmiko_reference[cmd]), cmd
    assert normalise(j["outputs"]["show version"]) == normalise(dev.show_version())
    for r in j["results"]:
        assert r["failed"] is False and r["output"] == j["outputs"][r["command"]], r


def test_exec_invalid_command_is_failed_result(api, tsid, netmiko_reference):
    j = exec_ok(api, tsid, {"commands": ["show nonsense", "show clock"]})
    bad, ok = j["results"]
    assert bad["failed"] is True, bad
    assert "% Invalid input" in bad.get("error", ""), bad
    assert normalise(bad["output"]) == normalise(netmiko_reference["show nonsense"]), bad
    assert ok["failed"] is False and dev.CLOCK_RE.match(ok["output"].strip()), ok


def test_exec_interactive_copy(api, tsid, telnet_dev):
    before = telnet_dev.log_text().count("startup-config saved")
    item = {"cmd": "copy running-config startup-config", "answer": "Destination filename", "send_newlines": 1}
    j = exec_ok(api, tsid, {"commands": [item, "show clock"]})
    out = j["outputs"]["copy running-config startup-config"]
    assert "[OK]" in out, j
    assert "\r" not in out and "R1#" not in out, out
    assert j["results"][0]["failed"] is False, j
    # the session is back at its prompt: the next command ran normally
    assert dev.CLOCK_RE.match(j["outputs"]["show clock"].strip()), j
    assert telnet_dev.log_text().count("startup-config saved") == before + 1, telnet_dev.diagnostics()


def test_exec_seed_example_copy_run_start(api, tsid):
    """The seed README's Telnet example, verbatim: IOS asks 'Destination filename
    [startup-config]?' first (docs/api.md: the answer form also answers default-value questions)."""
    j = exec_ok(api, tsid, {"commands": [{"cmd": "copy run start", "answer": "\\[confirm\\]", "send_newlines": 1}]})
    assert "[OK]" in j["outputs"]["copy run start"], j
    j = exec_ok(api, tsid, {"commands": ["show clock"]})
    assert dev.CLOCK_RE.match(j["outputs"]["show clock"].strip()), j


def test_exec_config_block_with_save(api, tsid):
    desc = "set over telnet by netdev-broker"
    j = exec_ok(api, tsid, {"config": ["interface Gi1", f"description {desc}"], "save": True})
    assert j["results"], j
    for r in j["results"]:
        assert r["failed"] is False, r
    assert any("[OK]" in r["output"] for r in j["results"]), j  # write memory ran
    st = api.get(f"/telnet-session/{tsid}/status", timeout=HTTP_TIMEOUT)
    assert st.status == 200 and st.json["mode"] == "enable", st
    j = exec_ok(api, tsid, {"commands": ["show running-config", "show startup-config"]})
    want = f"interface GigabitEthernet1\n description {desc}\n"
    assert want in normalise(j["outputs"]["show running-config"]) + "\n", j["outputs"]["show running-config"]
    assert want in normalise(j["outputs"]["show startup-config"]) + "\n", j["outputs"]["show startup-config"]


def test_paging_answered_when_terminal_length_refused(api, opened, authz_dev):
    sid = open_ok(api, opened, authz_dev)
    j = exec_ok(api, sid, {"commands": ["show running-config", "show version"]})
    for cmd in ("show running-config", "show version"):
        assert_clean_output(cmd, j["outputs"][cmd])
    assert normalise(j["outputs"]["show running-config"]) == normalise(
        dev.show_running_config(HOSTNAME, dev.initial_interfaces(), [])
    )
    assert normalise(j["outputs"]["show version"]) == normalise(dev.show_version())


def test_line_password_only_device(api, opened, line_dev):
    sid = open_ok(api, opened, line_dev)
    st = api.get(f"/telnet-session/{sid}/status", timeout=HTTP_TIMEOUT)
    assert st.status == 200 and st.json["mode"] == "enable" and st.json["alive"] is True, st
    j = exec_ok(api, sid, {"commands": ["show version"]})
    assert normalise(j["outputs"]["show version"]) == normalise(dev.show_version()), j


def test_line_password_wrong_is_401(api, line_dev):
    r = api.post("/telnet-session", open_body(line_dev, password=CANARY_WRONG_PASSWORD), timeout=HTTP_TIMEOUT)
    assert r.status == 401, f"{r}\n{line_dev.diagnostics()}"


def test_session_with_telnet_device_type(api, opened, telnet_dev):
    sid = open_ok(api, opened, telnet_dev, path="/session", device_type="cisco_ios_telnet", secret=CANARY_ENABLE_SECRET)
    st = api.get(f"/session/{sid}/status", timeout=HTTP_TIMEOUT)
    assert st.status == 200 and st.json["protocol"] == "telnet", st
    j = exec_ok(api, sid, {"commands": ["show ip interface brief"]}, path="/session")
    assert normalise(j["outputs"]["show ip interface brief"]) == normalise(
        dev.show_ip_interface_brief(dev.initial_interfaces())
    )


def test_delete_twice_then_404(api, telnet_dev):
    r = api.post("/telnet-session", open_body(telnet_dev), timeout=HTTP_TIMEOUT)
    assert r.status == 201, r
    sid = r.json["session_id"]
    ends_re = re.compile(r"session (?:closed|gone): .*")
    n_before = len(ends_re.findall(telnet_dev.log_text()))
    assert api.delete(f"/telnet-session/{sid}", timeout=HTTP_TIMEOUT).status == 204
    assert api.delete(f"/telnet-session/{sid}", timeout=HTTP_TIMEOUT).status == 204
    assert api.get(f"/telnet-session/{sid}/status", timeout=HTTP_TIMEOUT).status == 404
    assert api.get(f"/session/{sid}/status", timeout=HTTP_TIMEOUT).status == 404
    # the device saw the session end, by `exit` (docs/api.md: closing logs out)
    deadline = time.monotonic() + 10
    ends = []
    while time.monotonic() < deadline:
        ends = ends_re.findall(telnet_dev.log_text())
        if len(ends) > n_before:
            break
        time.sleep(0.1)
    assert len(ends) > n_before, f"device session still open 10 s after DELETE\n{telnet_dev.diagnostics()}"
    assert ends[n_before:] == ["session closed: exit"], telnet_dev.diagnostics()


def test_delete_via_session_route(api, telnet_dev):
    r = api.post("/telnet-session", open_body(telnet_dev), timeout=HTTP_TIMEOUT)
    assert r.status == 201, r
    sid = r.json["session_id"]
    assert api.delete(f"/session/{sid}", timeout=HTTP_TIMEOUT).status == 204
    assert api.get(f"/telnet-session/{sid}/status", timeout=HTTP_TIMEOUT).status == 404


# ---------------------------------------------------------------------------------------------
# 3. netdev-broker telnet-debug
# ---------------------------------------------------------------------------------------------
def telnet_debug(d: TelnetDevice, password: str, enable: str, stdin: Optional[str] = None):
    """``telnet-debug <host> <username> <password> [enable_password] [port]``: the port is the
    fifth positional argument, so an enable password is always given."""
    argv = [str(broker_binary()), "telnet-debug", d.host, d.username, password, enable, str(d.port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETDEV_BROKER_")}
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, env=env, cwd=d.workdir
    )


def kinds(stdout: str) -> set:
    return {m.group(1) for m in re.finditer(r"^\[(\w+)\]", stdout, re.M)}


def assert_no_secret(proc) -> None:
    for s in SECRETS:
        assert s not in proc.stdout and s not in proc.stderr, f"{s} in telnet-debug output"


def test_telnet_debug_logs_in(telnet_dev):
    p = telnet_debug(telnet_dev, CANARY_PASSWORD, CANARY_ENABLE_SECRET)
    print(p.stdout, p.stderr)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}\n{telnet_dev.diagnostics()}"
    assert_no_secret(p)
    assert {"connect", "recv", "telnet", "match", "send", "done"} <= kinds(p.stdout), p.stdout
    assert "stop" not in kinds(p.stdout), p.stdout
    assert p.stdout.strip().splitlines()[-1].startswith("[done]"), p.stdout
    # raw bytes escaped: busybox's opening IAC DO ECHO
    assert re.search(r'^\[recv\] .*\\xff\\xfd\\x01', p.stdout, re.M), p.stdout
    # busybox telnetd opens with DO ECHO, DO NAWS, WILL ECHO, WILL SUPPRESS-GO-AHEAD
    for line in (
        "server WILL ECHO -> DO ECHO",
        "server WILL SUPPRESS-GO-AHEAD -> DO SUPPRESS-GO-AHEAD",
        "server DO NAWS -> WILL NAWS",
        "server DO ECHO -> WONT ECHO",
    ):
        assert f"[telnet] {line}" in p.stdout, (line, p.stdout)
    assert re.search(r"^\[match\] .*[Uu]sername", p.stdout, re.M), p.stdout
    assert re.search(r"^\[match\] .*[Pp]assword", p.stdout, re.M), p.stdout
    assert re.search(r"^\[send\] .*\*{8}", p.stdout, re.M), p.stdout
    assert re.search(r"^\[send\] .*netops", p.stdout, re.M), p.stdout


def test_telnet_debug_wrong_password(telnet_dev):
    p = telnet_debug(telnet_dev, CANARY_WRONG_PASSWORD, CANARY_ENABLE_SECRET)
    print(p.stdout, p.stderr)
    assert p.returncode != 0, p.stdout
    assert_no_secret(p)
    assert {"connect", "recv", "telnet", "match", "send", "stop"} <= kinds(p.stdout), p.stdout
    assert "done" not in kinds(p.stdout), p.stdout
    assert p.stdout.strip().splitlines()[-1].startswith("[stop]"), p.stdout
    stops = [l for l in p.stdout.splitlines() if l.startswith("[stop]")]
    assert stops and re.search(r"Login invalid|[Aa]uthentication failed|rejected the login", stops[-1]), stops


def test_telnet_debug_password_from_stdin(telnet_dev):
    p = telnet_debug(telnet_dev, "-", CANARY_ENABLE_SECRET, stdin=CANARY_PASSWORD + "\n")
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert_no_secret(p)
    assert "done" in kinds(p.stdout), p.stdout


# ---------------------------------------------------------------------------------------------
# Last: the device's own log
# ---------------------------------------------------------------------------------------------
def test_device_logs_hold_no_secret(telnet_dev, line_dev, authz_dev):
    for d in (telnet_dev, line_dev, authz_dev):
        text = d.log_text()
        assert text, f"empty device log {d.log_path}"
        for s in SECRETS:
            assert s not in text, f"{s} in {d.log_path}"
        # a password typed at a command prompt would have been echoed into an output
        assert "SECRET-AT-PROMPT" not in text, d.diagnostics()
        assert "session crashed" not in text, d.diagnostics()
