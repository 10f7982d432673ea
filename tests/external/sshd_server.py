"""A real OpenSSH server (Debian's ``/usr/sbin/sshd``) for the external suite.

Each :class:`Sshd` is a private sshd: its own ``sshd_config``, its own host keys generated with
``ssh-keygen`` in a temp dir, 127.0.0.1 (and optionally 127.0.0.2) on a free high port,
``UsePAM no``, ``PidFile none``, ``StrictModes no``, ``LogLevel VERBOSE`` to stderr (``-e``, so
every ``Connection from`` line lands in its log file). One account may log in: the dedicated
system user ``nbtest`` (created with ``useradd -M`` when missing; its password set with
``chpasswd`` from stdin, never argv). With ``UsePAM no`` sshd checks the password against
/etc/shadow itself. ``ForceCommand`` runs ``telnet_device.py --login none``: the IOS-like
device "R1" without a login of its own (sshd did the authentication), so a client sees the
banner and ``R1>``.

The device program, its wrapper and its event log live in a world-traversable directory
(``/tmp/nb-sshd-*``, 0755), because the device runs as ``nbtest``; the host keys stay in a
0700 directory only root (sshd) reads.

Needs root (sshd binds, switches to the user, reads /etc/shadow). Every wait has a deadline.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
DEVICE_PROGRAM = HERE / "telnet_device.py"
SSHD = "/usr/sbin/sshd"
SSH = "ssh"
SSH_KEYGEN = "ssh-keygen"
TEST_USER = "nbtest"
HOSTNAME = "R1"

# The legacy-only server: SHA-1 key exchange, SHA-1 RSA host-key signatures, 3DES, HMAC-SHA1.
# Two SHA-1 key exchanges, so explicit client lists can pick either one (group1 is the one old
# IOS images speak; group14-sha1 the one newer IOS 12.x/15.x images add).
LEGACY_OPTIONS = {
    "KexAlgorithms": "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1",
    "HostKeyAlgorithms": "ssh-rsa",
    "PubkeyAcceptedAlgorithms": "+ssh-rsa",
    "Ciphers": "3des-cbc",
    "MACs": "hmac-sha1",
}


def require_root() -> Optional[str]:
    """None when this process may run sshd, else the reason it may not."""
    if os.geteuid() != 0:
        return "the OpenSSH tests run sshd as root (CI runs as root)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} not found: install openssh-server (.ci/run does)"
    if not shutil.which(SSH) or not shutil.which(SSH_KEYGEN):
        return "ssh / ssh-keygen not found: install openssh-client (.ci/run does)"
    return None


def run(argv: list, *, input: Optional[str] = None, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def supported(query: str) -> list:
    """``ssh -Q kex|cipher|mac|key|...``: what this OpenSSH build implements."""
    return run([SSH, "-Q", query], timeout=10).stdout.split()


def openssh_version() -> str:
    return run([SSH, "-V"], timeout=10, check=False).stderr.strip()


# ---------------------------------------------------------------------------------------------
# The test account
# ---------------------------------------------------------------------------------------------
def ensure_test_user(password: str) -> pwd.struct_passwd:
    """The system user ``nbtest`` (no home dir created; home ``/`` so sshd's chdir works, shell
    /bin/sh for ForceCommand), with ``password`` set through chpasswd's stdin."""
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        run(["useradd", "--system", "-M", "-d", "/", "-s", "/bin/sh", "-c", "netdev-broker tests", TEST_USER])
        pw = pwd.getpwnam(TEST_USER)
    if pw.pw_shell != "/bin/sh":
        run(["usermod", "-s", "/bin/sh", TEST_USER])
    # chpasswd also sets the last-change date: without it (lastchg 0) sshd with UsePAM no would
    # demand a password change.
    run(["chpasswd"], input=f"{TEST_USER}:{password}\n")
    run(["usermod", "-U", TEST_USER], check=False)  # unlocked (no-op when it is)
    return pwd.getpwnam(TEST_USER)


def python_for(user: pwd.struct_passwd) -> str:
    """A python3 the test user can run (the device program needs only the stdlib; the venv's
    interpreter may live under /root)."""
    candidates = ["/usr/bin/python3", os.path.realpath(sys.executable), shutil.which("python3") or ""]
    for c in dict.fromkeys(c for c in candidates if c):
        p = subprocess.run(
            ["runuser", "-u", user.pw_name, "--", c, "-c", "import termios, select, argparse"],
            capture_output=True,
            timeout=30,
        )
        if p.returncode == 0:
            return c
    raise RuntimeError(f"no python3 that {user.pw_name} may run among {candidates}")


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------
def keygen(path: Path, kind: str, passphrase: str = "", comment: str = "nb-test") -> Path:
    """``ssh-keygen -t kind -N passphrase -f path`` (the passphrase is a test canary; it is an
    argument of a short-lived ssh-keygen only)."""
    for p in (path, path.with_name(path.name + ".pub")):
        if p.exists():
            p.unlink()
    argv = [SSH_KEYGEN, "-q", "-t", kind, "-N", passphrase, "-C", comment, "-f", str(path)]
    if kind == "rsa":
        argv[4:4] = ["-b", "2048"]
    run(argv)
    return path


def fingerprint(pub: Path) -> tuple:
    """(key type as ssh-keygen -l names it, ``SHA256:...``) of a public key file."""
    out = run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(pub)]).stdout.split()
    # "256 SHA256:xxx comment (ED25519)"
    return out[-1].strip("()"), out[1]


def public_key(pub: Path) -> tuple:
    """(type, base64) of a .pub file."""
    f = pub.read_text().split()
    return f[0], f[1]


# ---------------------------------------------------------------------------------------------
# sshd
# ---------------------------------------------------------------------------------------------
def listening(addr: str, port: int) -> bool:
    """addr:port in LISTEN state (/proc/net/tcp), without connecting (a probe connection would be
    one more "Connection from" in the log)."""
    a = addr.split(".")
    want = "".join(f"{int(x):02X}" for x in reversed(a)) + f":{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        f = line.split()
        if len(f) > 3 and f[1] == want and f[3] == "0A":
            return True
    return False


def children_of(pid: int) -> list:
    """Direct children of ``pid`` (from /proc/*/stat)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces and parentheses
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 1 and int(rest[1]) == pid:
            out.append(int(d.name))
    return out


class Sshd:
    """One private sshd. ``start()`` validates the config with ``sshd -t``, starts ``sshd -D -e``
    and waits for LISTEN; ``stop()`` ends it and the per-connection processes it forked;
    ``rotate_host_key()`` gives it a new host key on the same port."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        user: pwd.struct_passwd,
        python: str,
        *,
        key_type: str,
        options: Optional[dict] = None,
        addresses: tuple = ("127.0.0.1",),
        port: int,
    ):
        self.name = name
        self.user = user
        self.python = python
        self.key_type = key_type
        self.options = dict(options or {})
        self.addresses = addresses
        self.host = addresses[0]
        self.port = port
        # root-only: host keys, config, sshd's own log
        self.private = workdir
        self.private.mkdir(parents=True, exist_ok=True)
        os.chmod(self.private, 0o700)
        # world-traversable: what the device (running as nbtest) reads and writes
        self.shared = Path(tempfile.mkdtemp(prefix=f"nb-sshd-{name}-", dir="/tmp"))
        os.chmod(self.shared, 0o755)
        self.config = self.private / "sshd_config"
        self.log_path = self.private / "sshd.log"
        self.device_log = self.shared / "device-events.log"
        self.authorized_keys = self.shared / "authorized_keys"
        self.host_key = self.private / f"ssh_host_{key_type}_key"
        self.proc: Optional[subprocess.Popen] = None
        self.generation = 0
        self._setup_device()
        self.authorized_keys.write_text("")
        os.chmod(self.authorized_keys, 0o644)
        self.new_host_key()

    # -- files -------------------------------------------------------------------------------
    def _setup_device(self) -> None:
        program = self.shared / "telnet_device.py"
        shutil.copyfile(DEVICE_PROGRAM, program)
        os.chmod(program, 0o644)
        wrapper = self.shared / "device.sh"
        wrapper.write_text(
            "#!/bin/sh\n"
            "# sshd ForceCommand: the IOS-like device, no login of its own (sshd did it).\n"
            f"TELNET_DEVICE_LOG='{self.device_log}'\n"
            f"TELNET_DEVICE_HOSTNAME='{HOSTNAME}'\n"
            "TELNET_DEVICE_IDLE_TIMEOUT=300\n"
            "export TELNET_DEVICE_LOG TELNET_DEVICE_HOSTNAME TELNET_DEVICE_IDLE_TIMEOUT\n"
            f"exec '{self.python}' '{program}' --login none\n"
        )
        os.chmod(wrapper, 0o755)
        self.device_log.write_text("")
        os.chown(self.device_log, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.device_log, 0o644)
        self.wrapper = wrapper

    def new_host_key(self) -> tuple:
        """Generate a fresh host key (the old one is gone); returns its (type, fingerprint)."""
        self.generation += 1
        keygen(self.host_key, self.key_type, comment=f"{self.name}-hostkey-{self.generation}")
        return self.host_fingerprint()

    @property
    def host_key_pub(self) -> Path:
        return self.host_key.with_name(self.host_key.name + ".pub")

    def host_fingerprint(self) -> tuple:
        return fingerprint(self.host_key_pub)

    def authorize(self, pub: Path) -> None:
        with open(self.authorized_keys, "a") as f:
            f.write(pub.read_text().strip() + "\n")

    def config_text(self) -> str:
        lines = [f"# private sshd '{self.name}' for the netdev-broker external tests"]
        lines += [f"ListenAddress {a}:{self.port}" for a in self.addresses]
        lines += [
            f"HostKey {self.host_key}",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PermitEmptyPasswords no",
            "PermitRootLogin no",
            f"AllowUsers {self.user.pw_name}",
            f"ForceCommand {self.wrapper}",
            "PermitTTY yes",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "PermitUserEnvironment no",
            "UseDNS no",
            "LogLevel VERBOSE",
            "MaxStartups 100",
            "MaxAuthTries 6",
            "LoginGraceTime 60",
        ]
        # sshd takes the first value of a keyword: an option given here replaces the base line
        given = {k.lower() for k in self.options}
        lines = [l for l in lines if l.startswith("#") or l.split()[0].lower() not in given]
        lines += [f"{k} {v}" for k, v in self.options.items()]
        return "\n".join(lines) + "\n"

    # -- process -----------------------------------------------------------------------------
    def effective_config(self) -> dict:
        """``sshd -T``: the configuration sshd would run with (lower-case keys)."""
        out = run([SSHD, "-T", "-f", str(self.config)], timeout=30).stdout
        cfg: dict = {}
        for line in out.splitlines():
            k, _, v = line.partition(" ")
            cfg.setdefault(k, v)
        return cfg

    def start(self, deadline_s: float = 20) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        os.chmod("/run/sshd", 0o755)
        self.config.write_text(self.config_text())
        os.chmod(self.config, 0o600)
        check = run([SSHD, "-t", "-f", str(self.config)], timeout=30, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t rejected {self.config}:\n{check.stderr}\n{self.config_text()}")
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            logf.close()
        deadline = time.monotonic() + deadline_s
        while not all(listening(a, self.port) for a in self.addresses):
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd '{self.name}' exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd '{self.name}' not listening on port {self.port} after {deadline_s}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, grace: float = 10) -> None:
        """SIGTERM to the listener and to the per-connection sshd processes it forked (found by
        parent pid; a listener's SIGTERM leaves its connections running)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        conns = children_of(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in conns:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def restart(self) -> None:
        self.stop()
        self.start()

    def rotate_host_key(self) -> tuple:
        """Restart on the same port with a newly generated host key of the same type."""
        self.stop()
        fp = self.new_host_key()
        self.start()
        return fp

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.shared, ignore_errors=True)

    # -- logs --------------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def device_log_text(self) -> str:
        return self.device_log.read_text(errors="replace") if self.device_log.exists() else ""

    def connections(self, log: Optional[str] = None) -> list:
        """The ``Connection from A port P on B port Q`` lines sshd logged."""
        return re.findall(r"Connection from \S+ port \d+ on \S+ port \d+", self.log_text() if log is None else log)

    def diagnostics(self) -> str:
        return (
            f"--- sshd '{self.name}' log (tail) ---\n{self.log_tail()}\n"
            f"--- device event log (tail) ---\n{chr(10).join(self.device_log_text().splitlines()[-20:])}"
        )

    # -- the real OpenSSH client -------------------------------------------------------------
    def known_hosts_line(self) -> str:
        kt, b64 = public_key(self.host_key_pub)
        return f"[{self.host}]:{self.port} {kt} {b64}\n"

    def ssh(
        self,
        workdir: Path,
        *,
        identity: Optional[Path] = None,
        password: Optional[str] = None,
        options: Optional[dict] = None,
        stdin: str = "",
        verbose: bool = True,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess:
        """The OpenSSH client against this server (``-F /dev/null``, its own known_hosts holding
        exactly this server's key, StrictHostKeyChecking yes, ``-tt`` so the device gets a pty).
        Key auth with ``identity``; password auth with ``password`` through SSH_ASKPASS (the
        password travels in the environment, never argv)."""
        kh = workdir / f"client_known_hosts_{self.name}"
        kh.write_text(self.known_hosts_line())
        argv = [
            SSH, "-F", "/dev/null", "-tt", "-p", str(self.port),
            "-o", f"UserKnownHostsFile={kh}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
            "-o", "NumberOfPasswordPrompts=1",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
        env.pop("DISPLAY", None)
        if identity is not None:
            argv += ["-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                     "-o", "PreferredAuthentications=publickey"]  # fmt: skip
        if password is not None:
            askpass = workdir / "askpass.sh"
            askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$NB_ASKPASS"\n')
            askpass.chmod(0o700)
            env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", NB_ASKPASS=password, DISPLAY=":0")
            argv += ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]
        for k, v in (options or {}).items():
            argv += ["-o", f"{k}={v}"]
        if verbose:
            argv.append("-v")
        argv.append(f"{self.user.pw_name}@{self.host}")
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, env=env, start_new_session=True
        )


def negotiated(ssh_stderr: str) -> dict:
    """What ``ssh -v`` says was negotiated: kex, hostkey, cipher and mac (client->server)."""
    out = {}
    m = re.search(r"kex: algorithm: (\S+)", ssh_stderr)
    if m:
        out["kex"] = m.group(1)
    m = re.search(r"kex: host key algorithm: (\S+)", ssh_stderr)
    if m:
        out["hostkey"] = m.group(1)
    m = re.search(r"kex: client->server cipher: (\S+) MAC: (\S+)", ssh_stderr)
    if m:
        out["cipher"], out["mac"] = m.group(1), m.group(2)
    return out
