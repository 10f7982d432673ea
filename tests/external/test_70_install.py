"""install.sh, netdev-broker.sh and netdev-broker.service (docs/install.md).

Everything is installed into scratch roots (``install.sh --root DIR``): directories under /tmp
made world-traversable (0755) so that the service user can reach its files, removed afterwards.
The service user and group go into DIR/etc/passwd and DIR/etc/group (``useradd --prefix``); the
host's own files are checked to be untouched. The installed binary is then started the way the
unit starts it: as the service user's numeric uid/gid (``setpriv``) with umask 0077 and
``--config DIR/etc/netdev-broker/config.yml`` (install.sh writes DIR-prefixed paths into it).

1. A non-interactive install with flags: every file, directory, owner and mode; the service user
   in the scratch root only; the rendered config (parsed) and unit; ``systemd-analyze verify``
   (installed unit and the shipped one) and ``security --offline`` when the tool is present.
2. The installed broker as the service user: /health, an API call with the token, the dashboard,
   its log file (mode 0600 under UMask 0077), ``netdev-broker.sh health`` and ``logs``.
3. Debian's nginx as a private instance (own prefix and config, 127.0.0.1 high ports) with the
   site ``netdev-broker.sh nginx`` writes and a self-signed certificate made here: /health, the
   API with the token, the dashboard login (cookie round trip), X-Forwarded-For reaching the
   broker's login rate limit (trusted_proxies), and X-Forwarded-Proto/Host/For at an upstream
   that records them.
4. The life cycle in another root: install (``systemctl --root`` enable), hand edits, refused
   upgrades, upgrade (binary replaced, old one kept, config byte for byte), configure (users,
   port, command log off, writable paths in step, hand edits kept), uninstall (config, logs,
   state and user kept), uninstall --purge (all gone, nginx site too). Then the real paths
   (no --root: plain useradd, /opt, /etc, /var) in a private mount namespace over copies.
4c. Named API tokens: ``configure --add-token``/``--remove-token`` edit only ``api_tokens:``
   (the rest of the config byte for byte, a hand-written list's indentation and fields kept),
   print the token once with the SHA-256 in the file, refuse duplicates and unknown names; a
   token-only configure reloads (a faked systemctl, real paths in a mount namespace). The
   installed broker as the service user takes the printed tokens (with their roles) and, after
   ``--remove-token`` and the unit's reload (SIGHUP), refuses the removed one (401).
5. An interactive install through a pseudo-terminal: defaults, a refused answer asked again, the
   generated token shown, a web user whose password the binary asks twice without echo; the
   management script's menu.

Needs root (chown, useradd). Network: 127.0.0.1 only. Every subprocess and wait has a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import termios
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Optional

import bcrypt
import pytest
import yaml
from conftest import REPO, Api, broker_binary, free_port, stop_process, tail

INSTALL_SH = REPO / "install.sh"
UNIT_SRC = REPO / "netdev-broker.service"
WEB_PASSWORD = "CANARY-webpw-5e17"
OPT = "opt/netdev-broker"
CONF = "etc/netdev-broker/config.yml"
UNIT = "etc/systemd/system/netdev-broker.service"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (chown, useradd --prefix)")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NDB_", "NETDEV_BROKER_"))}
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    env.update(extra)
    return env


def run(argv: list, *, env: Optional[dict] = None, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(a) for a in argv], env=env or clean_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if check:
        assert r.returncode == 0, f"{argv} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def install_sh(root: Path, *args, systemd: bool = False, check: bool = True, env: Optional[dict] = None):
    argv = ["bash", INSTALL_SH, *args, "--root", root]
    if not systemd:
        argv.append("--no-systemd")
    return run(argv, check=check, env=env)


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@contextlib.contextmanager
def scratch_root(name: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=f"ndb-{name}-", dir="/tmp"))
    d.chmod(0o755)  # the service user must be able to traverse it
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def ids(root: Path, user: str = "netdev-broker") -> Optional[tuple[int, int]]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    return None


def group_line(root: Path, group: str = "netdev-broker") -> Optional[str]:
    return next((l for l in (root / "etc/group").read_text().splitlines() if l.split(":")[0] == group), None)


def unit_directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def make_hash(password: str) -> str:
    r = subprocess.run([str(broker_binary()), "hash-password", "--cost", "4"], input=password + "\n",
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r
    return r.stdout.strip()


@dataclass
class Installed:
    root: Path
    port: int
    uid: int
    gid: int
    output: str
    binary: Path

    @property
    def config(self) -> dict:
        return yaml.safe_load((self.root / CONF).read_text())

    @property
    def token(self) -> str:
        return self.config["api_token"]

    def mgmt(self, *args, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(["bash", self.root / OPT / "netdev-broker.sh", *args], check=check, timeout=timeout)


@contextlib.contextmanager
def serve_installed(inst: Installed, workdir: Path) -> Iterator[subprocess.Popen]:
    """The installed binary as the unit runs it: the service user's uid/gid, umask 0077, the
    installed config. Waits for /health."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is missing")
    workdir.mkdir(parents=True, exist_ok=True)
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    argv = [
        "setpriv", f"--reuid={inst.uid}", f"--regid={inst.gid}", "--clear-groups", "--",
        str(inst.root / OPT / "netdev-broker"), "serve", "--config", str(inst.root / CONF),
    ]  # fmt: skip
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(argv, cwd="/", env=clean_env(), stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                preexec_fn=lambda: os.umask(0o077))  # fmt: skip
    api = Api(f"http://127.0.0.1:{inst.port}", inst.token)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"installed broker exited with {proc.returncode}:\n{tail(err)}\n{tail(out)}")
            with contextlib.suppress(OSError):
                if api.get("/health", token=None, timeout=2).status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"installed broker did not answer /health in 15 s:\n{tail(err)}")
            time.sleep(0.1)
        yield proc
    finally:
        stop_process(proc, signal.SIGTERM, grace=10)


# ---------------------------------------------------------------------------------------------
# 1. non-interactive install
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Iterator[Installed]:
    host_files = {p: sha256(Path(p)) for p in ("/etc/passwd", "/etc/group") if Path(p).exists()}
    secrets = tmp_path_factory.mktemp("install-secrets")
    pwfile = secrets / "alice.pw"
    pwfile.write_text(WEB_PASSWORD + "\n")
    pwfile.chmod(0o600)
    port = free_port()
    with scratch_root("install") as root:
        r = install_sh(
            root, "install", "--non-interactive", "--binary", broker_binary(),
            "--host", "127.0.0.1", "--port", port, "--log-level", "DEBUG", "--log-mode", "file",
            "--max-sessions", "200", "--trusted-proxies", "127.0.0.1",
            "--add-web-user", f"alice:{pwfile}", "--bcrypt-cost", "4",
        )  # fmt: skip
        for p, digest in host_files.items():
            assert sha256(Path(p)) == digest, f"install.sh --root changed the host's {p}"
        uid_gid = ids(root)
        assert uid_gid, (root / "etc/passwd").read_text()
        yield Installed(root, port, uid_gid[0], uid_gid[1], r.stdout + r.stderr, broker_binary())


def test_install_files_owners_and_modes(installed):
    root, uid, gid = installed.root, installed.uid, installed.gid
    expected = {
        # path: (is_dir, mode, uid, gid)
        OPT: (True, 0o755, 0, 0),
        f"{OPT}/netdev-broker": (False, 0o755, 0, 0),
        f"{OPT}/netdev-broker.sh": (False, 0o755, 0, 0),
        f"{OPT}/install.sh": (False, 0o755, 0, 0),
        f"{OPT}/netdev-broker.service": (False, 0o644, 0, 0),
        f"{OPT}/config.example.yml": (False, 0o644, 0, 0),
        "etc/netdev-broker": (True, 0o750, 0, gid),
        CONF: (False, 0o640, 0, gid),
        UNIT: (False, 0o644, 0, 0),
        "var/log/netdev-broker": (True, 0o750, uid, gid),
        "var/log/netdev-broker/commands": (True, 0o750, uid, gid),
        "var/lib/netdev-broker": (True, 0o700, uid, gid),
    }
    for rel, (is_dir, mode, u, g) in expected.items():
        p = root / rel
        st = p.lstat()
        assert p.is_dir() == is_dir and not p.is_symlink(), rel
        assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == (oct(mode), u, g), rel
    # Nothing else in the install dir or the config dir (no temp files left behind).
    assert sorted(os.listdir(root / OPT)) == sorted(Path(k).name for k in expected if k.startswith(f"{OPT}/"))
    assert os.listdir(root / "etc/netdev-broker") == ["config.yml"]
    assert sha256(root / OPT / "netdev-broker") == sha256(installed.binary)
    for f in ("install.sh", "netdev-broker.sh", "netdev-broker.service", "config.example.yml"):
        assert sha256(root / OPT / f) == sha256(REPO / f), f
    # Parents made on the way are ordinary 0755 directories, whatever install.sh's umask.
    for rel in ("etc", "opt", "var", "var/log", "var/lib", "etc/systemd/system"):
        assert (root / rel).stat().st_mode & 0o777 == 0o755, rel


def test_service_user_lives_in_the_scratch_root_only(installed):
    root = installed.root
    passwd = next(l for l in (root / "etc/passwd").read_text().splitlines() if l.startswith("netdev-broker:"))
    name, _, uid, gid, _comment, home, shell = passwd.split(":")
    assert (int(uid), int(gid)) == (installed.uid, installed.gid)
    assert 0 < int(uid) < 1000, "a system uid"
    assert (home, shell) == ("/nonexistent", "/usr/sbin/nologin")
    assert group_line(root).split(":")[2] == gid
    assert f"created system user netdev-broker (in {root}/etc/passwd)" in installed.output
    # The host's /etc/passwd and /etc/group are compared byte for byte in the fixture.


def test_rendered_config(installed):
    root = installed.root
    text = (root / CONF).read_text()
    c = installed.config
    assert c["host"] == "127.0.0.1" and c["port"] == installed.port
    assert re.fullmatch(r"[0-9a-f]{64}", c["api_token"]), "a fresh 32-byte hex token"
    assert c["log_level"] == "DEBUG" and c["log_mode"] == "file"
    assert c["log_file"] == f"{root}/var/log/netdev-broker/netdev-broker.log"
    assert c["state_dir"] == f"{root}/var/lib/netdev-broker"
    assert c["cmd_log_dir"] == f"{root}/var/log/netdev-broker/commands"
    assert c["max_sessions"] == 200
    assert c["trusted_proxies"] == ["127.0.0.1"]
    assert [u["username"] for u in c["web_users"]] == ["alice"]
    h = c["web_users"][0]["password_hash"]
    assert h.startswith("$2b$04$") and bcrypt.checkpw(WEB_PASSWORD.encode(), h.encode())
    assert re.fullmatch(r"[0-9a-f]{64}", c["web_secret_key"])
    # The rest is config.example.yml: its keys and comments are all there.
    example = yaml.safe_load((REPO / "config.example.yml").read_text())
    for k, v in example.items():
        if k not in {"host", "port", "api_token", "log_level", "log_mode", "log_file", "state_dir",
                     "cmd_log_dir", "max_sessions", "trusted_proxies", "web_secret_key"}:  # fmt: skip
            assert c[k] == v, k
    assert "# --- SSH trust and reach" in text and text.startswith("# Written by install.sh on ")
    # No secret in plain text anywhere in the root except the config's token and key.
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert WEB_PASSWORD.encode() not in data, p
            if p != root / CONF:
                assert installed.token.encode() not in data, p


def test_rendered_unit(installed):
    root = installed.root
    d = unit_directives(root / UNIT)
    one = {k: v[-1] for k, v in d.items()}
    assert one["ExecStart"] == f"{root}/{OPT}/netdev-broker serve --config {root}/{CONF}"
    assert one["ReadWritePaths"].split() == [
        f"{root}/var/log/netdev-broker", f"{root}/var/lib/netdev-broker", f"{root}/var/log/netdev-broker/commands",
    ]  # fmt: skip
    # max_sessions 200 + max_connections 512: 2*200+512+1024 fds rounded up to 1024s; threads.
    assert (one["LimitNOFILE"], one["TasksMax"]) == ("2048", "968")
    want = {
        "Type": "simple", "User": "netdev-broker", "Group": "netdev-broker", "Restart": "on-failure",
        "UMask": "0077", "LimitCORE": "0", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
    }  # fmt: skip
    for k, v in want.items():
        assert one.get(k) == v, (k, one.get(k))
    assert "@system-service" in d["SystemCallFilter"]
    # Only the rendered lines differ from the shipped unit.
    shipped = UNIT_SRC.read_text().splitlines()
    mine = (root / UNIT).read_text().splitlines()
    diff = {a.split("=")[0] for a, b in zip(shipped, mine) if a != b}
    assert len(shipped) == len(mine) and diff <= {"ExecStart", "ReadWritePaths", "LimitNOFILE", "TasksMax"}, diff


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    return tool


def test_systemd_analyze_verify_and_security(installed, tmp_path):
    tool = systemd_analyze()
    r = run([tool, "verify", "--man=no", installed.root / UNIT], check=False)
    assert r.returncode == 0 and "netdev-broker" not in r.stdout + r.stderr, r
    # The shipped unit as is, with ExecStart pointing at a binary that exists here.
    shipped = tmp_path / "netdev-broker.service"
    shipped.write_text(UNIT_SRC.read_text().replace("/opt/netdev-broker/netdev-broker", str(installed.root / OPT / "netdev-broker")))
    r = run([tool, "verify", "--man=no", shipped], check=False)
    assert r.returncode == 0 and "netdev-broker" not in r.stdout + r.stderr, r
    r = run([tool, "security", "--offline=yes", "--no-pager", shipped], check=False)
    m = re.search(r"Overall exposure level for netdev-broker\.service: (\d+\.\d+)", r.stdout)
    assert m, r
    print(f"systemd-analyze security --offline: {m.group(1)}")
    assert float(m.group(1)) <= 2.0, r.stdout


# ---------------------------------------------------------------------------------------------
# 2. the installed broker
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def running(installed, tmp_path_factory):
    with serve_installed(installed, tmp_path_factory.mktemp("installed-broker")) as proc:
        yield proc


def test_installed_broker_serves_as_the_service_user(installed, running):
    api = Api(f"http://127.0.0.1:{installed.port}", installed.token)
    r = api.get("/health", token=None)
    assert r.status == 200 and r.json["status"] == "ok", r
    assert api.get("/sessions", token=None).status == 401
    r = api.get("/sessions")
    assert r.status == 200 and r.json["count"] == 0, r
    r = api.get("/", token=None)
    assert r.status == 200 and 'action="/login"' in r.body.decode(), r
    log = installed.root / "var/log/netdev-broker/netdev-broker.log"
    st = log.stat()
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o777)) == (installed.uid, installed.gid, "0o600")
    assert "listening on http://127.0.0.1:" in log.read_text()
    uid_line = next(l for l in Path(f"/proc/{running.pid}/status").read_text().splitlines() if l.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(installed.uid)] * 4, uid_line
    # The management script finds the broker from the config of its own root.
    r = installed.mgmt("health")
    assert '"status":"ok"' in r.stdout.replace(" ", ""), r
    r = installed.mgmt("logs", "--no-follow", "-n", "5")
    assert "GET /sessions" in r.stdout or "GET /health" in r.stdout, r
    r = installed.mgmt("version")
    assert r.stdout.startswith("netdev-broker ") and "OpenSSL" in r.stdout, r


# ---------------------------------------------------------------------------------------------
# 3. nginx in front
# ---------------------------------------------------------------------------------------------
class HeaderRecorder(BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802
        HeaderRecorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"recorded": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def https(port: int, ctx: ssl.SSLContext, method: str, path: str, body: Optional[bytes] = None,
          headers: Optional[dict] = None) -> tuple[int, dict, bytes]:  # fmt: skip
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        c.request(method, path, body=body, headers={"Host": "jump.test", **(headers or {})})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def wait_port(port: int, proc: subprocess.Popen, log: Path, deadline_s: float = 15) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not listen on {port} in {deadline_s} s:\n{tail(log)}")
        time.sleep(0.1)


def test_nginx_site_proxies_api_health_and_dashboard(installed, running, tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not nginx:
        pytest.skip("nginx is not installed (Debian: nginx)")
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is missing")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
         "-subj", "/CN=jump.test", "-addext", "subjectAltName=DNS:jump.test,IP:127.0.0.1"])  # fmt: skip
    tls_port, echo_tls_port = free_port(), free_port()
    r = installed.mgmt("nginx", "--cert", cert, "--key", key, "--server-name", "jump.test", "--listen", f"127.0.0.1:{tls_port}")
    site = installed.root / "etc/nginx/sites-available/netdev-broker"
    assert f"wrote {site}" in r.stdout, r
    assert "sudo ln -s /etc/nginx/sites-available/netdev-broker /etc/nginx/sites-enabled/netdev-broker" in r.stdout, r
    assert "nginx -t" in r.stdout and "systemctl reload nginx" in r.stdout, r
    text = site.read_text()
    assert f"proxy_pass http://127.0.0.1:{installed.port};" in text
    for h in ("Host $proxy_host", "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme",
              "X-Forwarded-Host $host"):  # fmt: skip
        assert f"proxy_set_header {h};" in text, h
    # Writing it again is fine (our own file); someone else's file is not overwritten.
    installed.mgmt("nginx", "--cert", cert, "--key", key, "--server-name", "jump.test", "--listen", f"127.0.0.1:{tls_port}")
    foreign = tmp_path / "foreign.conf"
    foreign.write_text("server {}\n")
    r = installed.mgmt("nginx", "--cert", cert, "--key", key, "--output", foreign, check=False)
    assert r.returncode != 0 and "--force" in r.stderr and foreign.read_text() == "server {}\n", r

    # The same site in front of a header recorder: what reaches the upstream.
    recorder = ThreadingHTTPServer(("127.0.0.1", 0), HeaderRecorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    echo_site = tmp_path / "echo-site.conf"
    echo_site.write_text(
        text.replace(f"127.0.0.1:{tls_port}", f"127.0.0.1:{echo_tls_port}")
        .replace(f"http://127.0.0.1:{installed.port}", f"http://127.0.0.1:{recorder.server_address[1]}")
    )
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
    include {echo_site};
}}
""")
    base = [nginx, "-p", f"{prefix}/", "-c", conf, "-e", prefix / "error.log"]
    run([*base, "-t"])
    log = prefix / "error.log"
    proc = subprocess.Popen([str(a) for a in base], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_port(tls_port, proc, log)
        wait_port(echo_tls_port, proc, log)
        ctx = ssl.create_default_context(cafile=str(cert))
        status, _, body = https(tls_port, ctx, "GET", "/health")
        assert status == 200 and b'"status":"ok"' in body.replace(b" ", b""), body
        status, _, _ = https(tls_port, ctx, "GET", "/sessions")
        assert status == 401
        status, _, body = https(tls_port, ctx, "GET", "/sessions", headers={"X-API-Token": installed.token})
        assert status == 200 and b'"count":0' in body.replace(b" ", b""), body
        status, hdrs, body = https(tls_port, ctx, "GET", "/")
        assert status == 200 and b'action="/login"' in body, body
        assert "strict-transport-security" in hdrs
        # Log in through the proxy: the cookie comes back and opens the dashboard.
        form = urllib.parse.urlencode({"username": "alice", "password": WEB_PASSWORD}).encode()
        ctype = {"Content-Type": "application/x-www-form-urlencoded"}
        status, hdrs, _ = https(tls_port, ctx, "POST", "/login", form, ctype)
        assert status in (302, 303) and hdrs.get("set-cookie", "").startswith("ndb_web="), (status, hdrs)
        # Through the TLS proxy (trusted, X-Forwarded-Proto https) the cookie is Secure.
        assert "; Secure" in hdrs["set-cookie"], hdrs["set-cookie"]
        cookie = hdrs["set-cookie"].split(";")[0]
        status, _, body = https(tls_port, ctx, "GET", "/", headers={"Cookie": cookie})
        assert status == 200 and b'action="/logout"' in body and b"alice" in body, body
        # X-Forwarded-For reaches the broker, which believes it because 127.0.0.1 is trusted.
        bad = urllib.parse.urlencode({"username": "alice", "password": "wrong"}).encode()
        status, _, _ = https(tls_port, ctx, "POST", "/login", bad, {**ctype, "X-Forwarded-For": "203.0.113.9"})
        assert status == 401
        broker_log = installed.root / "var/log/netdev-broker/netdev-broker.log"
        deadline = time.monotonic() + 5
        while "failed login from 203.0.113.9" not in broker_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "failed login from 203.0.113.9" in broker_log.read_text(), tail(broker_log)
        # The forwarded headers as the upstream sees them.
        status, _, _ = https(echo_tls_port, ctx, "GET", "/anything")
        assert status == 200
        seen = HeaderRecorder.seen[-1]
        assert seen.get("x-forwarded-for") == "127.0.0.1", seen
        assert seen.get("x-forwarded-proto") == "https", seen
        # Host is the upstream's address (the broker's DNS-rebinding guard accepts it); the
        # name the browser used is in X-Forwarded-Host.
        assert seen.get("x-forwarded-host") == "jump.test", seen
        assert seen.get("host") == f"127.0.0.1:{recorder.server_address[1]}", seen
    finally:
        stop_process(proc, signal.SIGTERM, grace=10)
        recorder.shutdown()


# ---------------------------------------------------------------------------------------------
# 4. life cycle: upgrade, configure, uninstall, purge
# ---------------------------------------------------------------------------------------------
def test_upgrade_configure_uninstall_purge(tmp_path):
    port = free_port()
    with scratch_root("cycle") as root:
        env = clean_env(NDB_WEB_PASSWORD=WEB_PASSWORD, NDB_LOG_MODE="both", NDB_PORT=str(port))
        r = install_sh(root, "--non-interactive", "--binary", broker_binary(), "--add-web-user", "alice",
                       "--bcrypt-cost", "4", systemd=True, env=env)  # fmt: skip
        c0 = yaml.safe_load((root / CONF).read_text())
        assert (c0["port"], c0["log_mode"]) == (port, "both"), "environment variables are prompts' answers too"
        assert bcrypt.checkpw(WEB_PASSWORD.encode(), c0["web_users"][0]["password_hash"].encode())
        wants = root / "etc/systemd/system/multi-user.target.wants/netdev-broker.service"
        if shutil.which("systemctl"):
            assert wants.is_symlink() and os.readlink(wants) == "/etc/systemd/system/netdev-broker.service", r.stdout

        # An operator edits the config by hand.
        cfg = root / CONF
        text = cfg.read_text().replace("denied_commands: []\n", "# operator: no reloads\ndenied_commands:\n  - '^reload\\b'\n")
        cfg.write_text(text)
        before = sha256(cfg)
        old_bin = sha256(root / OPT / "netdev-broker")

        # Refused upgrades change nothing.
        r = install_sh(root, "upgrade", "--binary", broker_binary(), "--port", "1", check=False)
        assert r.returncode != 0 and "configure" in r.stderr, r
        fake = tmp_path / "not-a-broker"
        fake.write_text("#!/bin/sh\necho hello\n")
        fake.chmod(0o755)
        r = install_sh(root, "upgrade", "--binary", fake, check=False)
        assert r.returncode != 0 and "does not look like netdev-broker" in r.stderr, r
        assert sha256(root / OPT / "netdev-broker") == old_bin and sha256(cfg) == before

        # A new build (here: the same program with other bytes).
        new = tmp_path / "netdev-broker"
        new.write_bytes(broker_binary().read_bytes() + b"\0upgrade-marker")
        new.chmod(0o755)
        r = install_sh(root, "upgrade", "--binary", new, "--non-interactive")
        assert "upgraded: netdev-broker" in r.stdout and "config kept" in r.stdout, r
        assert sha256(root / OPT / "netdev-broker") == sha256(new)
        assert sha256(root / OPT / "netdev-broker.previous") == old_bin
        assert sha256(cfg) == before, "upgrade keeps the config byte for byte"
        st = (root / OPT / "netdev-broker").stat()
        assert (oct(st.st_mode & 0o7777), st.st_uid) == ("0o755", 0)

        # configure: users, port, command log off, log mode; the unit follows.
        bob_hash = make_hash("bob-pw")
        port2 = free_port()
        r = install_sh(root, "configure", "--non-interactive", "--remove-web-user", "alice",
                       "--add-web-user-hash", f"bob:{bob_hash}", "--port", port2, "--cmd-log-dir", "off",
                       "--log-mode", "file")  # fmt: skip
        assert "web user alice: removed" in r.stdout and "web user bob: added" in r.stdout, r
        c = yaml.safe_load(cfg.read_text())
        assert c["port"] == port2 and c["cmd_log_dir"] == "" and c["log_mode"] == "file"
        assert [u["username"] for u in c["web_users"]] == ["bob"] and c["web_users"][0]["password_hash"] == bob_hash
        assert (c["api_token"], c["web_secret_key"]) == (c0["api_token"], c0["web_secret_key"]), "kept"
        assert c["denied_commands"] == ["^reload\\b"] and "# operator: no reloads" in cfg.read_text(), "hand edits kept"
        rw = unit_directives(root / UNIT)["ReadWritePaths"][-1].split()
        assert rw == [f"{root}/var/log/netdev-broker", f"{root}/var/lib/netdev-broker"]
        st = cfg.stat()
        assert (oct(st.st_mode & 0o777), st.st_uid, st.st_gid) == ("0o640", 0, ids(root)[1])

        # Bad values are refused and change nothing.
        before = sha256(cfg)
        for args, msg in [
            (["--port", "70000"], "port number"),
            (["--log-file", "/var/log/netdev-broker.log"], "directory of the broker's own"),
            (["--state-dir", "/var/lib"], "directory of the broker's own"),
            (["--add-web-user-hash", "eve:plain"], "bcrypt"),
            (["--add-web-user", "eve"], "no password"),
            (["--log-level", "LOUD"], "DEBUG, INFO"),
        ]:
            r = install_sh(root, "configure", "--non-interactive", *args, check=False)
            assert r.returncode != 0 and msg in r.stderr, (args, r)
            assert sha256(cfg) == before, args
        # A fresh token on request.
        install_sh(root, "configure", "--non-interactive", "--generate-token")
        c = yaml.safe_load(cfg.read_text())
        assert re.fullmatch(r"[0-9a-f]{64}", c["api_token"]) and c["api_token"] != c0["api_token"]

        # The configured broker starts with its config.
        uid, gid = ids(root)
        inst = Installed(root, port2, uid, gid, "", broker_binary())
        with serve_installed(inst, tmp_path / "cycle-broker"):
            assert Api(f"http://127.0.0.1:{port2}", c["api_token"]).get("/sessions").status == 200

        # A site written by the management script (removed by --purge only).
        site = root / "etc/nginx/sites-available/netdev-broker"
        inst.mgmt("nginx", "--cert", "/etc/ssl/x.pem", "--key", "/etc/ssl/x.key")
        assert site.is_file()

        # uninstall: service and program gone; config, logs, state, user kept.
        r = install_sh(root, "uninstall", "--non-interactive", systemd=True)
        assert not (root / OPT).exists() and not (root / UNIT).exists() and not wants.is_symlink()
        for rel in (CONF, "var/log/netdev-broker/netdev-broker.log", "var/lib/netdev-broker", "etc/nginx/sites-available/netdev-broker"):
            assert (root / rel).exists(), rel
        assert ids(root) is not None and "--purge removes them" in r.stdout

        # uninstall --purge: the rest, and the user and group.
        r = install_sh(root, "uninstall", "--purge", "--yes", "--non-interactive")
        for rel in ("etc/netdev-broker", "var/log/netdev-broker", "var/lib/netdev-broker", "etc/nginx/sites-available/netdev-broker"):
            assert not (root / rel).exists(), rel
        assert ids(root) is None and group_line(root) is None, (root / "etc/passwd").read_text()
        for rel in ("var/log", "var/lib", "etc"):
            assert (root / rel).is_dir(), f"{rel} itself stays"


# ---------------------------------------------------------------------------------------------
# 4b. the real paths (no --root) in a private mount namespace
# ---------------------------------------------------------------------------------------------
def test_real_paths_without_root_in_a_private_mount_namespace(tmp_path):
    """install.sh without --root: host paths, plain groupadd/useradd, getent. It runs in a private
    mount namespace (``unshare -m``) over copies of /etc, /opt, /var/log and /var/lib, so the host
    is untouched; the copies are inspected afterwards."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is missing")
    host_files = {p: sha256(Path(p)) for p in ("/etc/passwd", "/etc/group")}
    with scratch_root("realpaths") as d:
        shutil.copytree("/etc", d / "etc", symlinks=True)
        for sub in ("opt", "varlog", "varlib"):
            (d / sub).mkdir(mode=0o755)
        binds = f"mount --bind {d}/etc /etc && mount --bind {d}/opt /opt && " \
                f"mount --bind {d}/varlog /var/log && mount --bind {d}/varlib /var/lib"  # fmt: skip

        def in_ns(cmd: str) -> subprocess.CompletedProcess:
            return run(["unshare", "-m", "--propagation", "private", "bash", "-c", f"set -e; {binds}; {cmd}"])

        port = free_port()
        r = in_ns(f"bash {INSTALL_SH} install --non-interactive --no-systemd --binary {broker_binary()} --port {port}"
                  " && getent passwd netdev-broker")  # fmt: skip
        passwd = r.stdout.strip().splitlines()[-1].split(":")
        assert passwd[0] == "netdev-broker" and passwd[6] == "/usr/sbin/nologin", r.stdout
        uid, gid = int(passwd[2]), int(passwd[3])
        c = yaml.safe_load((d / "etc/netdev-broker/config.yml").read_text())
        assert (c["port"], c["log_file"], c["state_dir"], c["cmd_log_dir"]) == (
            port, "/var/log/netdev-broker/netdev-broker.log", "/var/lib/netdev-broker", "/var/log/netdev-broker/commands")
        unit = unit_directives(d / "etc/systemd/system/netdev-broker.service")
        assert unit["ExecStart"] == ["/opt/netdev-broker/netdev-broker serve --config /etc/netdev-broker/config.yml"]
        assert unit["ReadWritePaths"] == ["/var/log/netdev-broker /var/lib/netdev-broker /var/log/netdev-broker/commands"]
        for rel, (mode, u, g) in {
            "etc/netdev-broker/config.yml": (0o640, 0, gid),
            "opt/netdev-broker/netdev-broker": (0o755, 0, 0),
            "varlog/netdev-broker": (0o750, uid, gid),
            "varlib/netdev-broker": (0o700, uid, gid),
        }.items():
            st = (d / rel).stat()
            assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == (oct(mode), u, g), rel
        if shutil.which("systemd-analyze"):
            in_ns("systemd-analyze verify --man=no /etc/systemd/system/netdev-broker.service")
        in_ns(f"bash {INSTALL_SH} uninstall --purge --non-interactive --no-systemd")
        assert "netdev-broker:" not in (d / "etc/passwd").read_text()
        assert not (d / "etc/netdev-broker").exists() and not (d / "opt/netdev-broker").exists()
        assert not (d / "varlog/netdev-broker").exists() and not (d / "varlib/netdev-broker").exists()
    for p, digest in host_files.items():
        assert sha256(Path(p)) == digest, p


# ---------------------------------------------------------------------------------------------
# 4c. named API tokens: configure --add-token / --remove-token
# ---------------------------------------------------------------------------------------------
# The first tests check the file edits, the printed token and its hash (and check-config);
# test_installed_broker_takes_added_tokens_until_removed starts the installed broker on them.
TOKEN_RE = re.compile(r"ndb_[A-Za-z0-9_-]{43}")


def printed_tokens(out: str) -> dict[str, str]:
    """name -> token, from what install.sh printed for each token it added."""
    found = re.findall(r"API token (\S+): added .*\n.*\n  (ndb_\S+)\n", out)
    return dict(found)


def token_sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_configure_adds_and_removes_named_tokens(tmp_path):
    with scratch_root("tokens") as root:
        install_sh(root, "install", "--non-interactive", "--binary", broker_binary(), "--port", free_port())
        cfg, unit = root / CONF, root / UNIT
        # A hand edit that must survive byte for byte (quoting, comments, a block list).
        cfg.write_text(cfg.read_text().replace("denied_commands: []\n", "# ops: no reloads\ndenied_commands:\n  - '^reload\\b'\n")
                       .replace("host: \"127.0.0.1\"\n", "host: 127.0.0.1   # loopback only\n"))  # fmt: skip
        original = cfg.read_text()
        # The rendered config has the key, empty (config.example.yml's commented items after it).
        assert original.count("\napi_tokens: []\n") == 1 and "\n  - name:" not in original
        unit_before = sha256(unit)
        gid = ids(root)[1]

        # Add: the empty list gets the entry, the token printed once, the config holds only its
        # SHA-256.
        r = install_sh(root, "configure", "--add-token", "ansible-prod:operator:2999-06-30")
        tokens = printed_tokens(r.stdout)
        assert list(tokens) == ["ansible-prod"], r.stdout
        tok = tokens["ansible-prod"]
        assert TOKEN_RE.fullmatch(tok), tok
        assert (r.stdout + r.stderr).count(tok) == 1, "shown once"
        assert "API token ansible-prod: added (role operator, expires 2999-06-30)" in r.stdout, r.stdout
        assert "not reloaded (a scratch root)" in r.stdout, r.stdout
        text = cfg.read_text()
        first = (f'  - name: "ansible-prod"\n    token_sha256: "{token_sha(tok)}"\n'
                 '    role: operator\n    expires: "2999-06-30"\n')  # fmt: skip
        assert text == original.replace("\napi_tokens: []\n", "\napi_tokens:\n" + first, 1), "every other byte kept"
        c = yaml.safe_load(text)
        assert c["api_tokens"] == [{"name": "ansible-prod", "token_sha256": token_sha(tok), "role": "operator",
                                    "expires": "2999-06-30"}]  # fmt: skip
        assert c["host"] == "127.0.0.1" and c["denied_commands"] == ["^reload\\b"]
        st = cfg.stat()
        assert (oct(st.st_mode & 0o777), st.st_uid, st.st_gid) == ("0o640", 0, gid)
        assert os.listdir(root / "etc/netdev-broker") == ["config.yml"], "no temp file left"
        assert sha256(unit) == unit_before, "a token-only configure leaves the unit alone"
        for p in root.rglob("*"):
            if p.is_file():
                assert tok.encode() not in p.read_bytes(), p
        # The installed binary's `token hash` agrees with the entry.
        h = subprocess.run([str(root / OPT / "netdev-broker"), "token", "hash"], input=tok + "\n",
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        assert h.returncode == 0 and h.stdout.strip() == token_sha(tok) and not h.stderr, h
        # check-config passes the file.
        r = run([root / OPT / "netdev-broker", "check-config", "--config", cfg])
        assert "OK" in r.stdout, r

        # A second one from the environment variable goes after the first.
        r = install_sh(root, "configure", env=clean_env(NDB_ADD_TOKEN="ci:viewer"))
        ci = printed_tokens(r.stdout)["ci"]
        with_both = cfg.read_text()
        second = f'  - name: "ci"\n    token_sha256: "{token_sha(ci)}"\n    role: viewer\n'
        assert with_both == text.replace(first, first + second, 1), with_both

        # Refused, and nothing changes: a name that exists, one that does not, bad values, and
        # the settings of upgrade.
        for args, msg in [
            (["--add-token", "ansible-prod:admin"], "an API token named 'ansible-prod' exists already"),
            (["--remove-token", "nope"], "there is no API token named 'nope'"),
            (["--add-token", "x:root"], "--role 'root': expected one of viewer, reader, operator, admin"),
            (["--add-token", "bad/name:admin"], "expected 1 to 64 letters"),
            (["--add-token", "x:admin:2001-01-01"], "is in the past"),
            (["--add-token", "x:admin:soon"], "expected a date YYYY-MM-DD"),
            (["--add-token", "x"], "NAME:ROLE"),
            (["--add-token", "x:viewer", "--add-token", "x:admin"], "named 'x' exists already"),
        ]:
            r = install_sh(root, "configure", *args, check=False)
            assert r.returncode != 0 and msg in r.stderr, (args, r)
            assert cfg.read_text() == with_both, args
            assert not TOKEN_RE.search(r.stdout + r.stderr), (args, r)
        r = install_sh(root, "upgrade", "--binary", broker_binary(), "--add-token", "x:admin", check=False)
        assert r.returncode != 0 and "configure" in r.stderr, r
        assert os.listdir(root / "etc/netdev-broker") == ["config.yml"]

        # Remove: that entry's lines go, the rest stays byte for byte.
        r = install_sh(root, "configure", "--remove-token", "ansible-prod")
        assert "API token ansible-prod: removed" in r.stdout and not TOKEN_RE.search(r.stdout), r
        assert cfg.read_text() == with_both.replace(first, "", 1)
        # Replace (rotate) in one run: the old hash goes, a new token with the same name comes.
        r = install_sh(root, "configure", "--remove-token", "ci", "--add-token", "ci:reader")
        ci2 = printed_tokens(r.stdout)["ci"]
        assert ci2 != ci
        c = yaml.safe_load(cfg.read_text())
        assert c["api_tokens"] == [{"name": "ci", "token_sha256": token_sha(ci2), "role": "reader"}]
        # The last one removed: an empty list, not a key without a value (as rendered).
        install_sh(root, "configure", "--remove-token", "ci")
        assert cfg.read_text() == original
        assert yaml.safe_load(cfg.read_text())["api_tokens"] == []
        st = cfg.stat()
        assert (oct(st.st_mode & 0o777), st.st_uid, st.st_gid) == ("0o640", 0, gid)

        # With other settings: the full configure (settings, unit, restart), tokens included.
        port2 = free_port()
        r = install_sh(root, "configure", "--non-interactive", "--port", port2, "--add-token", "full:admin")
        c = yaml.safe_load(cfg.read_text())
        assert c["port"] == port2
        assert c["api_tokens"] == [{"name": "full", "token_sha256": token_sha(printed_tokens(r.stdout)["full"]),
                                    "role": "admin"}]  # fmt: skip


def test_token_edits_keep_hand_written_entries(tmp_path):
    """A list written by hand (items at column 0, fields install.sh never writes, comments, an RFC
    3339 expiry): an added entry takes the list's indentation, a removed one takes only its own
    lines with it."""
    with scratch_root("tokens-hand") as root:
        install_sh(root, "install", "--non-interactive", "--binary", broker_binary(), "--port", free_port())
        cfg = root / CONF
        hand = (
            "api_tokens:   # named tokens\n"
            "# the NOC's dashboards\n"
            "- name: grafana\n"
            "  token_sha256: " + "a" * 64 + "\n"
            "  role: viewer\n"
            "  allowed_hosts:\n"
            "    - 10.1.0.0/16\n"
            "  # no config changes\n"
            "  denied_commands: ['^conf']\n"
            "\n"
            "- name: 'backup'\n"
            "  token_sha256: \"" + "b" * 64 + "\"\n"
            "  role: reader\n"
            "\n"
            "# --- after the list ---\n"
        )  # fmt: skip
        base = cfg.read_text()
        assert base.count("\napi_tokens: []\n") == 1
        cfg.write_text(base.replace("\napi_tokens: []\n", "\n" + hand, 1))
        before = cfg.read_text()
        r = install_sh(root, "configure", "--add-token", "ansible:operator:2999-01-02T03:04:05+01:00")
        tok = printed_tokens(r.stdout)["ansible"]
        entry = (f'- name: "ansible"\n  token_sha256: "{token_sha(tok)}"\n  role: operator\n'
                 '  expires: "2999-01-02T02:04:05Z"\n')  # fmt: skip
        end_of_list = "  role: reader\n\n# --- after the list ---\n"
        assert before.count(end_of_list) == 1
        assert cfg.read_text() == before.replace(end_of_list, "  role: reader\n" + entry + "\n# --- after the list ---\n")
        c = yaml.safe_load(cfg.read_text())
        assert [t["name"] for t in c["api_tokens"]] == ["grafana", "backup", "ansible"]
        assert c["api_tokens"][0]["allowed_hosts"] == ["10.1.0.0/16"] and c["denied_commands"] == []
        after_add = cfg.read_text()
        install_sh(root, "configure", "--remove-token", "grafana")
        grafana = after_add[after_add.index("- name: grafana\n"):after_add.index("\n- name: 'backup'")]
        assert grafana.endswith("  denied_commands: ['^conf']\n")
        assert cfg.read_text() == after_add.replace(grafana, "", 1), "only grafana's lines went"
        install_sh(root, "configure", "--remove-token", "backup", "--remove-token", "ansible")
        c = yaml.safe_load(cfg.read_text())
        assert c["api_tokens"] == [] and cfg.read_text().count("api_tokens: [] # named tokens\n") == 1
        # A flow-style list is not edited.
        flow = base.replace("\napi_tokens: []\n", "\napi_tokens: [{name: x, token_sha256: " + "c" * 64 + ", role: admin}]\n", 1)
        cfg.write_text(flow)
        r = install_sh(root, "configure", "--add-token", "y:admin", check=False)
        assert r.returncode != 0 and "not a block list" in r.stderr, r
        assert cfg.read_text() == flow


def test_installed_broker_takes_added_tokens_until_removed(tmp_path):
    """Tokens made by ``configure --add-token`` work on the installed broker (run as the unit
    runs it) with their roles; ``--remove-token`` and a reload (the unit's ExecReload: SIGHUP to
    the main process; in a scratch root install.sh reloads nothing itself) refuse the removed
    one with 401, the others keep working, nothing restarts."""
    port = free_port()
    with scratch_root("tokens-live") as root:
        install_sh(root, "install", "--non-interactive", "--binary", broker_binary(), "--port", port,
                   "--log-mode", "file")  # fmt: skip
        r = install_sh(root, "configure", "--add-token", "ops:operator", "--add-token", "noc:viewer")
        tokens = printed_tokens(r.stdout)
        assert sorted(tokens) == ["noc", "ops"], r.stdout
        assert unit_directives(root / UNIT)["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
        uid, gid = ids(root)
        inst = Installed(root, port, uid, gid, "", broker_binary())
        base = f"http://127.0.0.1:{port}"
        ops, noc, admin = Api(base, tokens["ops"]), Api(base, tokens["noc"]), Api(base, inst.token)
        with serve_installed(inst, tmp_path / "tokens-broker") as proc:
            r = ops.get("/sessions")
            assert r.status == 200 and r.json["count"] == 0, r
            assert r.headers.get("x-request-id"), r.headers
            # Roles came with them: the viewer may not close, the operator may (nothing there).
            assert noc.get("/sessions").status == 200
            r = noc.delete(f"/session/{'0' * 32}")
            assert r.status == 403 and "role viewer" in r.json["detail"], r
            assert ops.delete(f"/session/{'0' * 32}").status == 204
            assert admin.get("/sessions").status == 200, "the install's api_token works beside them"

            r = install_sh(root, "configure", "--remove-token", "ops")
            assert "API token ops: removed" in r.stdout and "not reloaded (a scratch root)" in r.stdout, r.stdout
            assert ops.get("/sessions").status == 200, "in force until the reload"
            log = root / "var/log/netdev-broker/netdev-broker.log"
            applied = log.read_text().count("reload: configuration from")
            os.kill(proc.pid, signal.SIGHUP)  # setpriv exec'd the broker: its pid is the unit's MAINPID
            deadline = time.monotonic() + 10
            while log.read_text().count("reload: configuration from") == applied:
                assert time.monotonic() < deadline, f"no reload in 10 s:\n{tail(log)}"
                time.sleep(0.1)
            r = ops.get("/sessions")
            assert r.status == 401 and r.json["detail"] == "Invalid or missing API token", r
            assert noc.get("/sessions").status == 200 and admin.get("/sessions").status == 200
            assert proc.poll() is None, "reloaded, not restarted"
        text = log.read_text()
        assert not [t for t in tokens.values() if t in text], "a token in the broker's log"


def test_token_only_configure_reloads_the_running_service(tmp_path):
    """Real paths (no --root) in a private mount namespace, with systemd faked: a systemctl that
    records its arguments and /run/systemd/system present. A token-only configure reloads the
    active service (SIGHUP: tokens apply, sessions stay) and never restarts it."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is missing")
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "systemctl.calls"
    (fake / "systemctl").write_text(f'#!/bin/sh\necho "$*" >>{calls}\nexit 0\n')
    (fake / "systemctl").chmod(0o755)
    with scratch_root("tokens-reload") as d:
        shutil.copytree("/etc", d / "etc", symlinks=True)
        for sub in ("opt", "varlog", "varlib"):
            (d / sub).mkdir(mode=0o755)
        binds = f"mount --bind {d}/etc /etc && mount --bind {d}/opt /opt && " \
                f"mount --bind {d}/varlog /var/log && mount --bind {d}/varlib /var/lib && " \
                "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system"  # fmt: skip

        def in_ns(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
            env = clean_env()
            env["PATH"] = f"{fake}:{env['PATH']}"
            return run(["unshare", "-m", "--propagation", "private", "bash", "-c", f"set -e; {binds}; {cmd}"],
                       env=env, check=check)  # fmt: skip

        in_ns(f"bash {INSTALL_SH} install --non-interactive --no-systemd --binary {broker_binary()} --port {free_port()}")
        r = in_ns(f"bash {INSTALL_SH} configure --add-token ops:admin")
        assert calls.read_text().splitlines() == ["is-active --quiet netdev-broker.service", "reload netdev-broker.service"]
        assert "reloaded netdev-broker.service (no restart" in r.stdout, r
        assert [t["name"] for t in yaml.safe_load((d / "etc/netdev-broker/config.yml").read_text())["api_tokens"]] == ["ops"]
        calls.unlink()
        r = in_ns(f"bash {INSTALL_SH} configure --remove-token ops")
        assert calls.read_text().splitlines() == ["is-active --quiet netdev-broker.service", "reload netdev-broker.service"]
        # A refused change reloads nothing.
        calls.unlink()
        r = in_ns(f"bash {INSTALL_SH} configure --remove-token ops", check=False)
        assert r.returncode != 0 and not calls.exists(), r


# ---------------------------------------------------------------------------------------------
# 5. interactive
# ---------------------------------------------------------------------------------------------
class Pty:
    """A program on a pseudo-terminal that is its controlling terminal (so /dev/tty works)."""

    def __init__(self, argv: list, env: dict):
        self.master, slave = os.openpty()

        def ctty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([str(a) for a in argv], stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, preexec_fn=ctty)  # fmt: skip
        os.close(slave)
        self.buf = ""
        self.pos = 0

    def expect(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout} s; output:\n{self.buf}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"EOF before {pattern!r}; output:\n{self.buf}")
                self.buf += data.decode("utf-8", "replace")

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                if not data:
                    break
                self.buf += data.decode("utf-8", "replace")
        try:
            return self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        finally:
            os.close(self.master)


def test_interactive_install_and_menu(tmp_path):
    port = free_port()
    with scratch_root("interactive") as root:
        t = Pty(["bash", INSTALL_SH, "--root", root, "--no-systemd", "--binary", broker_binary(), "--bcrypt-cost", "4"], clean_env())
        try:
            t.expect(r"Bind address .*\[127\.0\.0\.1\]: ")
            t.send("")
            t.expect(r"Port \[8765\]: ")
            t.send(str(port))
            shown = t.expect(r"API token \(Enter: the freshly generated one shown\) \[([0-9a-f]{64})\]: ").group(1)
            t.send("")
            t.expect(r"Log level .*\[INFO\]: ")
            t.send("warning")
            t.expect(r"Log mode \(journal, file, both\) \[journal\]: ")
            t.send("syslog")
            t.expect(r"expected journal, file or both")
            t.expect(r"Log mode \(journal, file, both\) \[journal\]: ")
            t.send("both")
            t.expect(r"Log file \[/var/log/netdev-broker/netdev-broker\.log\]: ")
            t.send("")
            t.expect(r"State directory .*\[/var/lib/netdev-broker\]: ")
            t.send("")
            t.expect(r"Command log directory \(off: none\) \[/var/log/netdev-broker/commands\]: ")
            t.send("off")
            t.expect(r"Most sessions open at once \[1000\]: ")
            t.send("")
            t.expect(r"Trusted reverse proxies .*\[none\]: ")
            t.send("")
            t.expect(r"Enable the web dashboard .*\[y/N\]: ")
            t.send("y")
            t.expect(r"Web user to add: ")
            t.send("carol")
            t.expect(r"Password: ")
            t.send("carol-pw-1")
            t.expect(r"Again: ")
            t.send("carol-pw-1")
            t.expect(r"Add a web user or change a password \(Enter: done\): ")
            t.send("")
            t.expect(rf"API token:  {shown}")
        finally:
            rc = t.finish()
        assert rc == 0, t.buf
        assert "carol-pw-1" not in t.buf, "the password was echoed"
        c = yaml.safe_load((root / CONF).read_text())
        assert (c["port"], c["api_token"], c["log_level"], c["log_mode"], c["cmd_log_dir"]) == (port, shown, "WARNING", "both", "")
        assert c["trusted_proxies"] == []
        assert [u["username"] for u in c["web_users"]] == ["carol"]
        assert bcrypt.checkpw(b"carol-pw-1", c["web_users"][0]["password_hash"].encode())
        assert re.fullmatch(r"[0-9a-f]{64}", c["web_secret_key"])

        # The management script's menu.
        m = Pty(["bash", root / OPT / "netdev-broker.sh"], clean_env())
        try:
            m.expect(rf"netdev-broker \d+\.\d+\.\d+ on 127\.0\.0\.1:{port}")
            m.expect(r"choice: ")
            assert "7) nginx site" in m.buf and "5) logs" in m.buf
            m.send("9")
            m.expect(r"1-8 or q")
            m.send("q")
        finally:
            assert m.finish() == 0, m.buf
