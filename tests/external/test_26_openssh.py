"""SSH trust against a real OpenSSH server: Debian's ``/usr/sbin/sshd`` (openssh-server).

Private sshd instances (sshd_server.py), each on 127.0.0.1 and a free high port, with host keys
generated here, password and public-key authentication for the system user ``nbtest`` (password
= conftest CANARY_PASSWORD), ``ForceCommand`` = the IOS-like device "R1" (telnet_device.py
``--login none``), ``LogLevel DEBUG1`` on stderr so each connection's negotiated algorithms and
authentication are in the server's own log:

* ``legacy``: SHA-1 only: ``KexAlgorithms diffie-hellman-group1-sha1,diffie-hellman-group14-sha1``,
  ``HostKeyAlgorithms ssh-rsa`` (RSA host key), ``Ciphers 3des-cbc``, ``MACs hmac-sha1``.
* ``modern``: OpenSSH defaults, ed25519 host key; also listens on 127.0.0.2 (outside the
  allow-list of the trust broker).
* ``rotating``: like modern, on its own port; its host key is replaced (same port, same type)
  in the mismatch test, so the other tests never see a changed key.

Brokers (conftest ``broker_factory``, each with its own config, DEBUG logs):

* ``trust``: ``host_key_policy: accept-new``, ``known_hosts`` in its work dir, ``key_dir``,
  ``allowed_hosts: [127.0.0.1/32]``, ``denied_commands``.
* ``strict``: ``host_key_policy: strict`` on the trust broker's known_hosts file.
* ``strict-empty``: ``host_key_policy: strict`` on an empty known_hosts file.
* ``default``: no trust settings at all (accept-new into a known_hosts under ``state_dir``).

The sshd log is the witness: what the broker negotiated (``kex: algorithm:``, ``kex: host key
algorithm:``, ``kex: client->server cipher: X MAC: Y``), how it authenticated (``Accepted
password`` / ``Accepted publickey ... SHA256:...``), and whether it connected at all
(``Connection from``). The last test stops every broker started here and scans its outputs for
every canary (passwords, the key passphrase, the token).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import (
    ALL_CANARIES,
    CANARY_PASSWORD,
    CANARY_WRONG_PASSWORD,
    free_port,
    normalise,
)

import sshd_server as S
import telnet_device as dev

CANARY_KEY_PASSPHRASE = "CANARY-keypass-8e17"  # the passphrase of the broker's client key
OPEN_TIMEOUT = 20  # the broker's own open deadline (body "timeout")
HTTP_TIMEOUT = 90
SHA256_FP = re.compile(r"SHA256:[A-Za-z0-9+/]{43}(?![A-Za-z0-9+/=])")  # ssh-keygen -l form
LEGACY_KEX = {"diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1"}
SHA1_OR_WORSE = re.compile(r"sha1|md5|3des|-cbc|ssh-dss|^ssh-rsa$")
DENIED_RULES = [r"^reload\b", r"^write\s+erase"]

_skip_reason = S.require_root()
pytestmark = pytest.mark.skipif(_skip_reason is not None, reason=_skip_reason or "")


# ---------------------------------------------------------------------------------------------
# sshd fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ssh_user():
    user = S.ensure_test_user(CANARY_PASSWORD)
    return user, S.python_for(user)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("openssh")


def _sshd(workdir: Path, ssh_user, name: str, **kw) -> Iterator[S.Sshd]:
    user, python = ssh_user
    options = dict(kw.pop("options", {}))
    options.setdefault("LogLevel", "DEBUG1")  # the negotiated algorithms, per connection
    d = S.Sshd(name, workdir / f"sshd-{name}", user, python, port=free_port(), options=options, **kw)
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def legacy_sshd(workdir, ssh_user) -> Iterator[S.Sshd]:
    yield from _sshd(workdir, ssh_user, "legacy", key_type="rsa", options=S.LEGACY_OPTIONS)


@pytest.fixture(scope="module")
def modern_sshd(workdir, ssh_user) -> Iterator[S.Sshd]:
    yield from _sshd(workdir, ssh_user, "modern", key_type="ed25519", addresses=("127.0.0.1", "127.0.0.2"))


@pytest.fixture(scope="module")
def rotating_sshd(workdir, ssh_user) -> Iterator[S.Sshd]:
    yield from _sshd(workdir, ssh_user, "rotating", key_type="ed25519")


@pytest.fixture(scope="module")
def client_key(workdir) -> Path:
    """A passphrase-less client key for the OpenSSH self-checks (not the broker's)."""
    return S.keygen(workdir / "selfcheck_ed25519", "ed25519", comment="selfcheck")


# ---------------------------------------------------------------------------------------------
# brokers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def key_dir(workdir) -> Path:
    d = workdir / "broker-keys"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def trust(broker_factory, key_dir):
    return broker_factory(
        "trust",
        host_key_policy="accept-new",
        known_hosts=str(key_dir.parent / "trust_known_hosts"),
        key_dir=str(key_dir),
        allowed_hosts=["127.0.0.1/32"],
        denied_commands=DENIED_RULES,
    )


@pytest.fixture(scope="module")
def default_broker(broker_factory):
    return broker_factory("default")


@pytest.fixture(scope="module")
def strict_empty(broker_factory, workdir):
    kh = workdir / "empty_known_hosts"
    kh.write_text("")
    b = broker_factory("strict-empty", host_key_policy="strict", known_hosts=str(kh))
    b.known_hosts = kh
    return b


def known_hosts_of(trust) -> Path:
    import yaml

    return Path(yaml.safe_load(trust.config_path.read_text())["known_hosts"])


def body(d: S.Sshd, **extra) -> dict:
    b = {"host": d.host, "port": d.port, "username": S.TEST_USER, "password": CANARY_PASSWORD, "timeout": OPEN_TIMEOUT}
    b.update(extra)
    return {k: v for k, v in b.items() if v is not None}


class Witness:
    """The part of an sshd's log written during one request."""

    def __init__(self, d: S.Sshd):
        self.d = d
        self.start = len(d.log_text())

    def text(self) -> str:
        return self.d.log_text()[self.start :]

    def wait_for(self, pattern: str, timeout: float = 5) -> str:
        """The text once ``pattern`` is in it (sshd may log a connection's end a moment after
        the broker has answered), or the text at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            t = self.text()
            if re.search(pattern, t) or time.monotonic() > deadline:
                return t
            time.sleep(0.05)

    def negotiated(self) -> dict:
        t = self.text()
        out = {}
        for key, rx in (
            ("kex", r"kex: algorithm: (\S+)"),
            ("hostkey", r"kex: host key algorithm: (\S+)"),
            ("cipher", r"kex: client->server cipher: (\S+)"),
            ("mac", r"kex: client->server cipher: \S+ MAC: (\S+)"),
        ):
            m = re.findall(rx, t)
            out[key] = m
        return out


def open_session(b, d: S.Sshd, **extra):
    w = Witness(d)
    r = b.api.post("/session", body(d, **extra), timeout=HTTP_TIMEOUT)
    return r, w


def open_ok(b, d: S.Sshd, **extra) -> tuple:
    r, w = open_session(b, d, **extra)
    shown = {k: ("***" if k in ("password", "passphrase") else v) for k, v in body(d, **extra).items()}
    assert r.status == 201, f"POST /session {shown} -> {r}\n{d.diagnostics()}\n{b.diagnostics()}"
    return r.json["session_id"], w


def status(b, sid: str) -> dict:
    r = b.api.get(f"/session/{sid}/status", timeout=HTTP_TIMEOUT)
    assert r.status == 200, r
    return r.json


def algorithms(st: dict) -> list:
    parts = [p.strip() for p in st.get("algorithms", "").split("/")]
    assert len(parts) == 4, f"algorithms should be 'kex / hostkey / cipher / mac': {st}"
    return parts


def exec_ok(b, sid: str, commands: list) -> dict:
    r = b.api.post(f"/session/{sid}/exec", {"commands": commands}, timeout=HTTP_TIMEOUT)
    assert r.status == 200, r
    return r.json


def delete(b, sid: str) -> None:
    b.api.delete(f"/session/{sid}", timeout=HTTP_TIMEOUT)


def detail(r) -> str:
    """The error text: ``detail`` as a string, or, for a 422 (FastAPI shape ``{"detail":
    [{"type", "loc", "msg"}]}``), every entry's loc and msg."""
    try:
        d = r.json.get("detail")
    except ValueError:
        d = None
    if r.status == 422 and isinstance(d, list):
        assert d and all(isinstance(e, dict) and "msg" in e and "loc" in e for e in d), r
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in d)
    assert isinstance(d, str), r
    return d


def names_rule(rule: str, text: str) -> bool:
    """The rule as written, or as a quoted string literal of it (JSON / Rust Debug escaping)."""
    return rule in text or json.dumps(rule) in text


# ---------------------------------------------------------------------------------------------
# 0. The OpenSSH build and the servers, checked with the real OpenSSH client (no broker)
# ---------------------------------------------------------------------------------------------
def test_openssh_build_supports_the_legacy_algorithms():
    kex, ciphers, macs, keys = (S.supported(q) for q in ("kex", "cipher", "mac", "key"))
    print(S.openssh_version())
    for name in ("diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1"):
        assert name in kex, kex
    assert "3des-cbc" in ciphers, ciphers
    assert "hmac-sha1" in macs, macs
    assert "ssh-rsa" in keys, keys


def test_sshd_effective_configs(legacy_sshd, modern_sshd):
    legacy = legacy_sshd.effective_config()
    assert legacy["kexalgorithms"] == "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1", legacy
    assert legacy["hostkeyalgorithms"] == "ssh-rsa", legacy
    assert legacy["ciphers"] == "3des-cbc", legacy
    assert legacy["macs"] == "hmac-sha1", legacy
    assert "ssh-rsa" in legacy["pubkeyacceptedalgorithms"].split(","), legacy
    for cfg in (legacy, modern_sshd.effective_config()):
        assert cfg["usepam"] == "no" and cfg["passwordauthentication"] == "yes", cfg
        assert cfg["kbdinteractiveauthentication"] == "no", cfg
        assert cfg["forcecommand"].endswith("device.sh"), cfg
    modern = modern_sshd.effective_config()
    assert "sha1" not in modern["kexalgorithms"] and "cbc" not in modern["ciphers"], modern


LEGACY_CLIENT = {
    "KexAlgorithms": "diffie-hellman-group14-sha1",
    "HostKeyAlgorithms": "ssh-rsa",
    "Ciphers": "3des-cbc",
    "MACs": "hmac-sha1",
}


def test_selfcheck_legacy_sshd_with_openssh_client(legacy_sshd, client_key, workdir):
    legacy_sshd.authorize(client_key.with_name(client_key.name + ".pub"))
    for kex in ("diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1"):
        p = legacy_sshd.ssh(
            workdir, identity=client_key, options={**LEGACY_CLIENT, "KexAlgorithms": kex},
            stdin="terminal length 0\nshow version\nexit\n",
        )  # fmt: skip
        assert p.returncode == 0, f"{p.stderr[-2000:]}\n{legacy_sshd.diagnostics()}"
        assert S.negotiated(p.stderr) == {"kex": kex, "hostkey": "ssh-rsa", "cipher": "3des-cbc", "mac": "hmac-sha1"}
        out = normalise(p.stdout)
        assert "R1>" in out and normalise(dev.show_version("R1")) in out, out[-3000:]
    # The client's defaults (modern only) are refused by this server.
    p = legacy_sshd.ssh(workdir, identity=client_key, stdin="exit\n")
    assert p.returncode == 255 and "no matching key exchange method found" in p.stderr, p.stderr[-1500:]


def test_selfcheck_password_auth_with_openssh_client(modern_sshd, legacy_sshd, workdir):
    """UsePAM no: sshd checks /etc/shadow itself; the canary password works, a wrong one not."""
    p = modern_sshd.ssh(workdir, password=CANARY_PASSWORD, stdin="show clock\nexit\n")
    assert p.returncode == 0, f"{p.stderr[-2000:]}\n{modern_sshd.diagnostics()}"
    # input typed ahead is echoed before the prompt: the clock line follows "R1>"
    assert any(dev.CLOCK_RE.match(line.split("R1>")[-1].strip()) for line in normalise(p.stdout).splitlines()), p.stdout
    assert "Accepted password for nbtest" in modern_sshd.log_text()
    p = modern_sshd.ssh(workdir, password=CANARY_WRONG_PASSWORD, stdin="exit\n")
    assert p.returncode == 255 and "Permission denied" in p.stderr, p.stderr[-1500:]
    p = legacy_sshd.ssh(workdir, password=CANARY_PASSWORD, options=LEGACY_CLIENT, stdin="exit\n")
    assert p.returncode == 0, f"{p.stderr[-2000:]}\n{legacy_sshd.diagnostics()}"


def test_selfcheck_modern_sshd_on_both_addresses(modern_sshd, client_key, workdir):
    modern_sshd.authorize(client_key.with_name(client_key.name + ".pub"))
    p = modern_sshd.ssh(workdir, identity=client_key, stdin="exit\n")
    assert p.returncode == 0, f"{p.stderr[-2000:]}\n{modern_sshd.diagnostics()}"
    n = S.negotiated(p.stderr)
    assert n["hostkey"] == "ssh-ed25519" and "sha1" not in n["kex"], n
    assert S.listening("127.0.0.2", modern_sshd.port)


# ---------------------------------------------------------------------------------------------
# 1. Legacy algorithms: refused by default, offered on request
# ---------------------------------------------------------------------------------------------
def test_default_session_vs_legacy_only_is_502_naming_the_mismatch(trust, legacy_sshd):
    r, w = open_session(trust, legacy_sshd)
    assert r.status == 502, f"{r}\n{legacy_sshd.diagnostics()}"
    d = detail(r)
    assert "algorithm" in d.lower(), d
    assert "legacy_algorithms" in d, f"no hint about legacy_algorithms: {d}"
    # The server really was asked and refused the offer (not a connect failure).
    refused = r"no matching (key exchange method|host key type|cipher|MAC) found"
    t = w.wait_for(refused)
    assert "Connection from 127.0.0.1" in t, t
    assert re.search(refused, t), t
    assert "Accepted" not in w.text()  # no login happened


def test_legacy_session_connects_and_runs_show_version(trust, legacy_sshd):
    fp_type, fp = legacy_sshd.host_fingerprint()
    sid, w = open_ok(trust, legacy_sshd, legacy_algorithms=True)
    try:
        st = status(trust, sid)
        kex, hostkey, cipher, mac = algorithms(st)
        assert kex in LEGACY_KEX and hostkey == "ssh-rsa" and cipher == "3des-cbc" and mac == "hmac-sha1", st
        # the server's own view of the same connection
        n = w.negotiated()
        assert n["kex"] == [kex] and n["hostkey"] == ["ssh-rsa"], (n, st)
        assert n["cipher"] == ["3des-cbc"] and n["mac"] == ["hmac-sha1"], (n, st)
        assert st.get("host_key_type") == "ssh-rsa", st
        assert st.get("host_key_fingerprint") == fp, (st, fp)
        assert "Accepted password for nbtest" in w.wait_for("Accepted password"), w.text()
        j = exec_ok(trust, sid, ["show version"])
        assert normalise(j["outputs"]["show version"]) == normalise(dev.show_version("R1")), j
    finally:
        delete(trust, sid)


@pytest.mark.parametrize(
    "lists,want",
    [
        (
            {"kex": ["diffie-hellman-group14-sha1"], "host_key_algorithms": ["ssh-rsa"], "ciphers": ["3des-cbc"], "macs": ["hmac-sha1"]},
            "diffie-hellman-group14-sha1 / ssh-rsa / 3des-cbc / hmac-sha1",
        ),
        (
            {"kex": "diffie-hellman-group1-sha1", "host_key_algorithms": "ssh-rsa", "ciphers": "3des-cbc", "macs": "hmac-sha1"},
            "diffie-hellman-group1-sha1 / ssh-rsa / 3des-cbc / hmac-sha1",
        ),
        (
            # comma-separated strings with several entries: the server's one is picked
            {"kex": "curve25519-sha256,diffie-hellman-group1-sha1", "host_key_algorithms": "ssh-ed25519,ssh-rsa",
             "ciphers": "aes128-ctr,3des-cbc", "macs": "hmac-sha2-256,hmac-sha1"},
            "diffie-hellman-group1-sha1 / ssh-rsa / 3des-cbc / hmac-sha1",
        ),
    ],
    ids=["lists-group14", "strings-group1", "strings-several"],
)
def test_explicit_algorithm_lists(trust, legacy_sshd, lists, want):
    sid, w = open_ok(trust, legacy_sshd, **lists)
    try:
        st = status(trust, sid)
        assert " / ".join(algorithms(st)) == want, st
        kex, hostkey, cipher, mac = want.split(" / ")
        n = w.negotiated()
        assert n == {"kex": [kex], "hostkey": [hostkey], "cipher": [cipher], "mac": [mac]}, n
        j = exec_ok(trust, sid, ["show version"])
        assert normalise(j["outputs"]["show version"]) == normalise(dev.show_version("R1")), j
    finally:
        delete(trust, sid)


# ---------------------------------------------------------------------------------------------
# 2. Host keys: accept-new, strict, a changed key
# ---------------------------------------------------------------------------------------------
def ssh_keygen_F(host: str, port: int, known_hosts: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [S.SSH_KEYGEN, "-F", f"[{host}]:{port}", "-f", str(known_hosts)], capture_output=True, text=True, timeout=30
    )


def test_modern_accept_new_records_the_key(trust, modern_sshd):
    kh = known_hosts_of(trust)
    kt, b64 = S.public_key(modern_sshd.host_key_pub)
    _, fp = modern_sshd.host_fingerprint()
    sid, w = open_ok(trust, modern_sshd)
    try:
        st = status(trust, sid)
        assert st.get("host_key_type") == "ssh-ed25519", st
        assert st.get("host_key_fingerprint") == fp, (st, fp)
        kex, hostkey, cipher, mac = algorithms(st)
        assert hostkey == "ssh-ed25519", st
        for a in (kex, cipher, mac):
            assert not SHA1_OR_WORSE.search(a), st
        n = w.negotiated()
        assert n["kex"] == [kex] and n["hostkey"] == [hostkey] and n["cipher"] == [cipher], (n, st)
    finally:
        delete(trust, sid)
    assert kh.is_file(), f"accept-new wrote no {kh}"
    lines = [l for l in kh.read_text().splitlines() if l.startswith(f"[127.0.0.1]:{modern_sshd.port} ")]
    assert lines == [f"[127.0.0.1]:{modern_sshd.port} {kt} {b64}"], kh.read_text()
    p = ssh_keygen_F("127.0.0.1", modern_sshd.port, kh)
    assert p.returncode == 0 and b64 in p.stdout, (p.returncode, p.stdout, p.stderr)


def test_per_session_strict_on_a_known_key_is_201(trust, modern_sshd):
    kh = known_hosts_of(trust)
    assert kh.is_file() and ssh_keygen_F("127.0.0.1", modern_sshd.port, kh).returncode == 0, "the accept-new test must run first"
    before = kh.read_bytes()
    sid, _ = open_ok(trust, modern_sshd, host_key_policy="strict")
    try:
        assert status(trust, sid).get("host_key_fingerprint") == modern_sshd.host_fingerprint()[1]
    finally:
        delete(trust, sid)
    assert kh.read_bytes() == before


def test_strict_broker_on_that_known_hosts_is_201(broker_factory, trust, modern_sshd):
    kh = known_hosts_of(trust)
    assert ssh_keygen_F("127.0.0.1", modern_sshd.port, kh).returncode == 0, "the accept-new test must run first"
    before = kh.read_bytes()
    strict = broker_factory("strict", host_key_policy="strict", known_hosts=str(kh))
    sid, _ = open_ok(strict, modern_sshd)
    try:
        st = status(strict, sid)
        assert st.get("host_key_fingerprint") == modern_sshd.host_fingerprint()[1], st
    finally:
        delete(strict, sid)
    assert kh.read_bytes() == before


def test_per_session_off_is_422_when_config_does_not_allow_it(trust, modern_sshd):
    r, w = open_session(trust, modern_sshd, host_key_policy="off")
    assert r.status == 422, r
    assert "host_key_policy" in detail(r), r
    t = w.wait_for("Connection from", timeout=1.5)
    assert not modern_sshd.connections(t), f"refused in validation, yet connected:\n{t}"


def test_strict_with_empty_known_hosts_is_502_unknown_key(strict_empty, modern_sshd):
    _, fp = modern_sshd.host_fingerprint()
    r, _ = open_session(strict_empty, modern_sshd)
    assert r.status == 502, r
    d = detail(r)
    assert re.search(r"unknown|not known", d, re.I), d
    assert fp in d, (fp, d)
    assert strict_empty.known_hosts.read_text() == "", "strict must not record the key"


def test_rotated_host_key_is_502_mismatch_and_known_hosts_unchanged(broker_factory, trust, rotating_sshd):
    kh = known_hosts_of(trust)
    _, old_fp = rotating_sshd.host_fingerprint()
    sid, _ = open_ok(trust, rotating_sshd)
    delete(trust, sid)
    assert ssh_keygen_F("127.0.0.1", rotating_sshd.port, kh).returncode == 0, kh.read_text()
    before = kh.read_bytes()

    _, new_fp = rotating_sshd.rotate_host_key()  # same port, same key type, a new key
    assert new_fp != old_fp
    r, w = open_session(trust, rotating_sshd)
    assert r.status == 502, f"{r}\n{rotating_sshd.diagnostics()}"
    d = detail(r)
    assert "host key mismatch" in d, d
    assert old_fp in d and new_fp in d, (old_fp, new_fp, d)
    assert "Accepted" not in w.text(), "logged in despite a changed host key"
    # per-session strict and a strict broker on the same file refuse it the same way
    r2, _ = open_session(trust, rotating_sshd, host_key_policy="strict")
    assert r2.status == 502 and "host key mismatch" in detail(r2), r2
    assert kh.read_bytes() == before, "known_hosts changed after a mismatch"
    # after the rotation the real OpenSSH client agrees: the file's key is not the server's
    p = ssh_keygen_F("127.0.0.1", rotating_sshd.port, kh)
    assert p.returncode == 0 and S.public_key(rotating_sshd.host_key_pub)[1] not in p.stdout


def test_default_config_accept_new_into_state_dir(default_broker, modern_sshd):
    kt, b64 = S.public_key(modern_sshd.host_key_pub)
    sid, _ = open_ok(default_broker, modern_sshd)
    delete(default_broker, sid)
    state = default_broker.workdir / "state"
    hits = [p for p in state.rglob("*") if p.is_file() and f"[127.0.0.1]:{modern_sshd.port} {kt} {b64}" in p.read_text(errors="replace")]
    assert hits, f"default accept-new recorded nothing under {state}: {sorted(state.rglob('*'))}"
    assert ssh_keygen_F("127.0.0.1", modern_sshd.port, hits[0]).returncode == 0


# ---------------------------------------------------------------------------------------------
# 3. Key authentication
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broker_key(key_dir, modern_sshd) -> Path:
    k = S.keygen(key_dir / "id_ed25519_nb", "ed25519", passphrase=CANARY_KEY_PASSPHRASE, comment="netdev-broker")
    modern_sshd.authorize(k.with_name(k.name + ".pub"))
    return k


def test_key_auth_with_passphrase(trust, modern_sshd, broker_key):
    _, key_fp = S.fingerprint(broker_key.with_name(broker_key.name + ".pub"))
    sid, w = open_ok(trust, modern_sshd, password=None, key_file=str(broker_key), passphrase=CANARY_KEY_PASSPHRASE)
    try:
        accepted = rf"Accepted publickey for nbtest from 127\.0\.0\.1 port \d+ ssh2: ED25519 {re.escape(key_fp)}"
        assert re.search(accepted, w.wait_for(accepted)), w.text()
        assert "Accepted password" not in w.text()
        j = exec_ok(trust, sid, ["show version"])
        assert normalise(j["outputs"]["show version"]) == normalise(dev.show_version("R1")), j
    finally:
        delete(trust, sid)


def test_key_file_outside_key_dir_is_422(trust, modern_sshd, broker_key, workdir):
    outside = workdir / "outside-keys"
    outside.mkdir(exist_ok=True)
    copy = outside / broker_key.name
    shutil.copyfile(broker_key, copy)
    copy.chmod(0o600)
    for path in (str(copy), str(broker_key.parent / ".." / "outside-keys" / broker_key.name)):
        r, w = open_session(trust, modern_sshd, password=None, key_file=path, passphrase=CANARY_KEY_PASSPHRASE)
        assert r.status == 422, (path, r)
        assert "key_dir" in detail(r) or "key_file" in detail(r), r
        assert "Accepted" not in w.text(), (path, w.text())


# ---------------------------------------------------------------------------------------------
# 4. allowed_hosts, denied_commands
# ---------------------------------------------------------------------------------------------
def test_allowed_hosts_refuses_before_any_packet(trust, default_broker, modern_sshd):
    w = Witness(modern_sshd)
    r = trust.api.post("/session", body(modern_sshd, host="127.0.0.2"), timeout=HTTP_TIMEOUT)
    assert r.status == 403, r
    assert "127.0.0.2" in detail(r), r
    t = w.wait_for("Connection from", timeout=1.5)  # give a stray connection time to be logged
    assert modern_sshd.connections(t) == [], f"the refused target saw a connection:\n{t}"
    # the same target is reachable: a broker without an allow-list gets in
    w = Witness(modern_sshd)
    sid, _ = open_ok(default_broker, modern_sshd, host="127.0.0.2")
    delete(default_broker, sid)
    assert any(" on 127.0.0.2 port " in c for c in modern_sshd.connections(w.wait_for(" on 127\\.0\\.0\\.2 port "))), w.text()


def test_denied_commands_refuse_the_whole_request(trust, modern_sshd):
    sid, _ = open_ok(trust, modern_sshd)
    try:
        for cmds, rule in (
            (["show clock", "reload"], DENIED_RULES[0]),
            (["show version", {"cmd": "write erase", "answer": "confirm"}], DENIED_RULES[1]),
        ):
            before = modern_sshd.device_log_text()
            r = trust.api.post(f"/session/{sid}/exec", {"commands": cmds}, timeout=HTTP_TIMEOUT)
            assert r.status == 403, (cmds, r)
            assert names_rule(rule, detail(r)), (rule, r)
            new = modern_sshd.device_log_text()[len(before) :]
            assert " cmd " not in new and "cmd mode=" not in new, f"a command of a refused request reached the device:\n{new}"
        j = exec_ok(trust, sid, ["show clock"])  # the session is still usable
        assert dev.CLOCK_RE.match(j["outputs"]["show clock"].strip()), j
    finally:
        delete(trust, sid)


def test_wrong_password_is_401(trust, modern_sshd):
    r, w = open_session(trust, modern_sshd, password=CANARY_WRONG_PASSWORD)
    assert r.status == 401, r
    assert "Failed password for nbtest" in w.wait_for("Failed password"), w.text()


# ---------------------------------------------------------------------------------------------
# 5. Canaries: none in any output of the brokers started here
# ---------------------------------------------------------------------------------------------
def test_no_canary_in_these_brokers_outputs(broker_factory):
    started = broker_factory.started
    assert started, "no broker was started"
    canaries = tuple(ALL_CANARIES) + (CANARY_KEY_PASSPHRASE,)
    leaks = []
    for b in started:
        code = b.stop(grace=10)
        assert code == 0, f"broker exited {code} on SIGTERM\n{b.diagnostics()}"
        assert b.log_file.is_file() and b.log_file.stat().st_size > 0, b.workdir
        for p in sorted(x for x in b.workdir.rglob("*") if x.is_file()):
            data = p.read_bytes()
            for c in canaries:
                for m in re.finditer(re.escape(c.encode()), data):
                    s = data.rfind(b"\n", 0, m.start()) + 1
                    e = data.find(b"\n", m.end())
                    leaks.append(f"{p}: {c}: {data[s : e if e != -1 else len(data)][:300]!r}")
    assert not leaks, "canary leaked:\n" + "\n".join(leaks)
