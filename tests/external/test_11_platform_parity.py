"""Netmiko parity on eight platforms, against one FakeNOS process serving one host per platform.

For each platform the reference is Netmiko itself: ``ConnectHandler(device_type=<platform>)``,
``enable()`` where the platform has an enable level, ``send_command`` for the commands below
(all known to that FakeNOS platform, see fakenos/plugins/nos/platforms_yaml/<platform>.yaml) and
one command the device refuses. Then a broker session with the same ``device_type`` on the same
host runs the same commands in one ``POST /session/{id}/exec``; ``outputs[cmd]`` must equal
Netmiko's ``send_command`` output after conftest.normalise (line endings and trailing whitespace
only), ``results[i].failed`` must be true for the refused command (where the platform's refusal
text appears) and false for the others, and ``GET /session/{id}/status`` must report the profile
name as ``platform`` and a sensible ``mode``.

Parity is defined only where Netmiko works. Whether it does is found out at run time, by trying:
if Netmiko raises, that platform's tests are skipped with the exception and the last prompt
Netmiko saw. Never a hard-coded skip.

FakeNOS settings per platform (``Case.host_config``) only move FakeNOS towards the real platform;
nothing here is shaped to the broker:

* ``base_prompt``: FakeNOS gives every platform ``NAME>`` / ``NAME#``. Where the real prompt
  differs, the host's shell ``base_prompt`` makes it look real: Junos ``netops@JUNOS-1>``,
  VRP ``<VRP-1>``, IOS XR ``RP/0/RP0/CPU0:XR-1>`` (the real one ends in ``#``, and FakeNOS
  cannot start a platform at ``#``), Linux ``netops@LINUX-1:~$``.
* ``_default_`` (the answer to any unknown command): FakeNOS's YAML platforms all answer
  ``Unknown command``, which no real one of these says. It is replaced by the real platform's
  refusal text, with the caret line where the real platform prints one. The two Python plugins
  (cisco_ios, arista_eos) keep their own, which are already the real text.
* Junos: FakeNOS 1.2.1 prints ``{{master:0}}`` (format-escaped braces that are never
  formatted); the real device prints ``{master:0}``. The commands used here get the real line.
  ``set cli screen-length 0`` and ``set cli complete-on-space off`` get the confirmations the
  real CLI prints (FakeNOS prints nothing, and Netmiko waits for them).
* ProCurve: FakeNOS answers ``enable`` with the literal text ``null``; a real switch prints
  nothing when no password is set.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml
from conftest import (
    CANARY_ENABLE_SECRET,
    CANARY_PASSWORD,
    DEVICE_USERNAME,
    free_port,
    normalise,
    run_fakenos,
)

NETMIKO_VERSION = metadata.version("netmiko")
FAKENOS_VERSION = metadata.version("fakenos")
# Netmiko's connect/login/read deadlines (seconds) and the broker's per-command deadline.
NETMIKO_TIMEOUTS = dict(conn_timeout=20, auth_timeout=20, banner_timeout=20, timeout=30)
NETMIKO_READ_TIMEOUT = 30
BROKER_OPEN_TIMEOUT = 30
BROKER_CMD_TIMEOUT = 20


def caret_line(prompt: str, command: str, token: str) -> str:
    """The line a CLI prints under the echoed ``prompt + command``: a ``^`` under ``token``.
    FakeNOS echoes the command straight after the prompt (no blank), so that is the column."""
    return " " * (len(prompt) + command.index(token)) + "^"


def stock_output(platform: str, command: str) -> str:
    """A command's output from FakeNOS's own platform file."""
    import fakenos.plugins.nos as nos_pkg

    path = Path(nos_pkg.__path__[0]) / "platforms_yaml" / f"{platform}.yaml"
    return yaml.safe_load(path.read_text())["commands"][command]["output"]


@dataclass(frozen=True)
class Case:
    device_type: str  # Netmiko's device_type, and the broker profile of the same name
    host: str  # FakeNOS host name
    base_prompt: str  # what FakeNOS prints before '>' / '#'
    commands: tuple  # commands this FakeNOS platform knows at the prompt Netmiko works at
    invalid: str  # a command the device refuses
    failure_text: str  # the real platform's refusal text (a substring of the device's answer)
    enable: bool  # call Netmiko's enable() (the platform has an enable level reached on login)
    modes: frozenset  # sensible values for `mode` in the broker's status after open
    invalid_answer: Optional[str] = None  # FakeNOS `_default_` (None: the plugin's own)
    commands_override: dict = field(default_factory=dict)  # FakeNOS commands added/replaced

    @property
    def all_commands(self) -> list:
        return [*self.commands, self.invalid]

    def host_config(self) -> dict:
        cmds = copy.deepcopy(self.commands_override)
        if self.invalid_answer is not None:
            cmds["_default_"] = {"output": self.invalid_answer, "help": "answer to unknown commands"}
        return {
            "username": DEVICE_USERNAME,
            "password": CANARY_PASSWORD,
            "port": free_port(),
            "platform": self.device_type,
            "server": {"plugin": "ParamikoSshServer", "configuration": {"address": "127.0.0.1", "timeout": 1}},
            "shell": {"plugin": "CMDShell", "configuration": {"base_prompt": self.base_prompt}},
            "nos": {"plugin": self.device_type, "configuration": {"commands": cmds}},
        }


BOTH_PROMPTS = ["{base_prompt}>", "{base_prompt}#"]


def _junos_real_context(command: str) -> dict:
    return {
        "output": stock_output("juniper_junos", command).replace("{{master:0}}", "{master:0}"),
        "help": f"{command} (FakeNOS text with the real {{master:0}} context line)",
        "prompt": BOTH_PROMPTS,
    }


CASES = [
    Case(
        device_type="cisco_ios",
        host="IOS-1",
        base_prompt="IOS-1",
        # show version: enable mode only in FakeNOS; show cdp neighbors has tabs; show vrf detail
        # has lines ending in '>' ("<not set>").
        commands=("show version", "show ip interface brief", "show cdp neighbors", "show vrf detail"),
        invalid="show nonsense",
        failure_text="% Invalid input detected at '^' marker.",
        enable=True,
        modes=frozenset({"enable"}),
    ),
    Case(
        device_type="cisco_nxos",
        host="NXOS-1",
        base_prompt="NXOS-1",
        # show interface brief has a line ending in '#'; show ip route lines ending in '>'.
        commands=("show version", "show ip interface brief", "show interface brief", "show ip route"),
        invalid="show nonsense",
        failure_text="% Invalid command at '^' marker.",
        invalid_answer=caret_line("NXOS-1#", "show nonsense", "nonsense") + "\n% Invalid command at '^' marker.",
        enable=True,
        modes=frozenset({"enable"}),
    ),
    Case(
        device_type="cisco_xr",
        host="XR-1",
        base_prompt="RP/0/RP0/CPU0:XR-1",
        commands=("show version", "show ip route", "show ipv4 vrf all interface brief"),
        invalid="show nonsense",
        failure_text="% Invalid input detected at '^' marker.",
        invalid_answer=caret_line("RP/0/RP0/CPU0:XR-1>", "show nonsense", "nonsense")
        + "\n% Invalid input detected at '^' marker.",
        # Netmiko's cisco_xr is NoEnable: a real XR logs in at EXEC ('#'). FakeNOS starts XR at
        # '>' and knows an `enable`; either level is a sensible report.
        enable=False,
        modes=frozenset({"enable", "user"}),
    ),
    Case(
        device_type="arista_eos",
        host="EOS-1",
        base_prompt="EOS-1",
        # show version: enable mode only; show environment cooling has lines ending in '%'.
        commands=("show version", "show ip interface brief", "show vlan", "show environment cooling"),
        invalid="show nonsense",
        failure_text="% Invalid input",
        enable=True,
        modes=frozenset({"enable"}),
    ),
    Case(
        device_type="juniper_junos",
        host="JUNOS-1",
        base_prompt=f"{DEVICE_USERNAME}@JUNOS-1",
        # show version and show ospf neighbor end with the {master:0} context line.
        commands=("show version", "show system uptime", "show ospf neighbor", "show lldp neighbors"),
        invalid="show nonsense",
        failure_text="syntax error, expecting <command>.",
        invalid_answer=caret_line(f"{DEVICE_USERNAME}@JUNOS-1>", "show nonsense", "nonsense")
        + "\nsyntax error, expecting <command>.",
        enable=False,  # Junos has no enable; operational mode is where commands run
        modes=frozenset({"user", "operational"}),
        commands_override={
            "show version": _junos_real_context("show version"),
            "show ospf neighbor": _junos_real_context("show ospf neighbor"),
            "set cli screen-length 0": {"output": "Screen length set to 0", "help": "", "prompt": BOTH_PROMPTS},
            "set cli complete-on-space off": {
                "output": "Disabling complete-on-space",
                "help": "",
                "prompt": BOTH_PROMPTS,
            },
        },
    ),
    Case(
        device_type="hp_procurve",
        host="PROCURVE-1",
        base_prompt="PROCURVE-1",
        commands=("show system", "show ip", "show interfaces brief", "show vlans"),
        invalid="show nonsense",
        failure_text="Invalid input: nonsense",
        invalid_answer="Invalid input: nonsense",
        enable=True,  # operator '>' / manager '#'; Netmiko enables in its session preparation
        modes=frozenset({"enable"}),
        commands_override={
            "enable": {"output": None, "new_prompt": "{base_prompt}#", "help": "", "prompt": "{base_prompt}>"},
        },
    ),
    Case(
        device_type="huawei_vrp",
        host="VRP-1",
        base_prompt="<VRP-1",
        commands=("display version", "display vlan", "display interface brief", "display ip routing-table verbose"),
        invalid="display nonsense",
        failure_text="Error: Unrecognized command found at '^' position.",
        invalid_answer=caret_line("<VRP-1>", "display nonsense", "nonsense")
        + "\nError: Unrecognized command found at '^' position.",
        enable=False,  # VRP has user view <...> and system view [...]; no enable
        modes=frozenset({"user"}),
    ),
    Case(
        device_type="linux",
        host="LINUX-1",
        base_prompt=f"{DEVICE_USERNAME}@LINUX-1:~",
        commands=("ip address show", "ip route show", "ip link show", "arp -a"),
        invalid="nonsense",
        failure_text="command not found",
        invalid_answer="-bash: nonsense: command not found",
        # Netmiko's linux enable() is `sudo -s`; nobody opens a shell session as root to run
        # `ip` (and FakeNOS's linux `enable` -> '#' is its own invention).
        enable=False,
        modes=frozenset({"user"}),
    ),
]
CASE_BY_TYPE = {c.device_type: c for c in CASES}
DEVICE_TYPES = [c.device_type for c in CASES]
COMMAND_PAIRS = [pytest.param(c.device_type, cmd, id=f"{c.device_type}-{cmd}") for c in CASES for cmd in c.all_commands]


# ---------------------------------------------------------------------------------------------
# FakeNOS: one process, eight hosts
# ---------------------------------------------------------------------------------------------
@dataclass
class PlatformDevices:
    ports: dict  # device_type -> port
    workdir: Path


@pytest.fixture(scope="module")
def platform_devices(tmp_path_factory) -> PlatformDevices:
    workdir = tmp_path_factory.mktemp("fakenos-platforms")
    inventory = {"hosts": {c.host: c.host_config() for c in CASES}}
    ports = {c.device_type: inventory["hosts"][c.host]["port"] for c in CASES}
    with run_fakenos(inventory, workdir, deadline_s=60):
        yield PlatformDevices(ports, workdir)


# ---------------------------------------------------------------------------------------------
# The reference: Netmiko
# ---------------------------------------------------------------------------------------------
@dataclass
class NetmikoRun:
    outputs: dict = field(default_factory=dict)
    prompts: dict = field(default_factory=dict)  # step -> prompt Netmiko saw
    base_prompt: str = ""
    seconds: float = 0.0
    skip_reason: Optional[str] = None  # set when Netmiko itself fails: parity is undefined


def _last_prompt_seen(session_log: Path) -> str:
    try:
        lines = [ln.rstrip() for ln in session_log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "<no session log>"
    return lines[-1] if lines else "<nothing received>"


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def run_netmiko(case: Case, port: int, workdir: Path) -> NetmikoRun:
    from netmiko import ConnectHandler

    run = NetmikoRun()
    session_log = workdir / f"netmiko-{case.device_type}.log"
    step = "connect (login and session preparation)"
    t0 = time.monotonic()
    conn = None
    try:
        conn = ConnectHandler(
            device_type=case.device_type,
            host="127.0.0.1",
            port=port,
            username=DEVICE_USERNAME,
            password=CANARY_PASSWORD,
            secret=CANARY_ENABLE_SECRET,
            session_log=str(session_log),
            **NETMIKO_TIMEOUTS,
        )
        run.base_prompt = conn.base_prompt
        step = "find_prompt"
        run.prompts["after login"] = conn.find_prompt()
        if case.enable:
            step = "enable"
            conn.enable()
            run.prompts["after enable"] = conn.find_prompt()
        for cmd in case.all_commands:
            step = f"send_command({cmd!r})"
            run.outputs[cmd] = conn.send_command(cmd, read_timeout=NETMIKO_READ_TIMEOUT)
        step = "find_prompt after the commands"
        run.prompts["after commands"] = conn.find_prompt()
    except Exception as e:  # noqa: BLE001 - any Netmiko failure means "no reference"
        run.skip_reason = (
            f"Netmiko {NETMIKO_VERSION} device_type={case.device_type} does not work against "
            f"FakeNOS {FAKENOS_VERSION} ({case.device_type} plugin): {step} raised {_short(e)}; "
            f"last prompt seen: {_last_prompt_seen(session_log)!r}"
        )
    finally:
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001 - the reference is already taken
                pass
        run.seconds = time.monotonic() - t0
    return run


@pytest.fixture(scope="module")
def netmiko_runs(platform_devices):
    cache: dict = {}

    def get(device_type: str) -> NetmikoRun:
        if device_type not in cache:
            case = CASE_BY_TYPE[device_type]
            cache[device_type] = run_netmiko(case, platform_devices.ports[device_type], platform_devices.workdir)
        run = cache[device_type]
        if run.skip_reason:
            pytest.skip(run.skip_reason)
        return run

    return get


# ---------------------------------------------------------------------------------------------
# The broker, on the same device
# ---------------------------------------------------------------------------------------------
@dataclass
class BrokerRun:
    open: Any
    status_after_open: Any = None
    exec: Any = None
    status_after_exec: Any = None
    delete_status: Optional[int] = None


def run_broker(api, case: Case, port: int) -> BrokerRun:
    body = {
        "host": "127.0.0.1",
        "port": port,
        "username": DEVICE_USERNAME,
        "password": CANARY_PASSWORD,
        "device_type": case.device_type,
        "timeout": BROKER_OPEN_TIMEOUT,
    }
    # The secret goes exactly where Netmiko was told to use it (enable()); on linux it would
    # mean `sudo -s`, which Netmiko is not asked to do either.
    if case.enable:
        body["enable_password"] = CANARY_ENABLE_SECRET
    opened = api.post("/session", body, timeout=BROKER_OPEN_TIMEOUT + 30)
    run = BrokerRun(open=opened)
    if opened.status != 201:
        return run
    sid = opened.json["session_id"]
    try:
        run.status_after_open = api.get(f"/session/{sid}/status", timeout=30)
        run.exec = api.post(
            f"/session/{sid}/exec",
            {"commands": case.all_commands, "timeout": BROKER_CMD_TIMEOUT},
            timeout=BROKER_CMD_TIMEOUT * len(case.all_commands) + 30,
        )
        run.status_after_exec = api.get(f"/session/{sid}/status", timeout=30)
    finally:
        run.delete_status = api.delete(f"/session/{sid}", timeout=30).status
    return run


@pytest.fixture(scope="module")
def broker_runs(api, platform_devices, netmiko_runs):
    cache: dict = {}

    def get(device_type: str) -> BrokerRun:
        netmiko_runs(device_type)  # the reference first (and skip where there is none)
        if device_type not in cache:
            cache[device_type] = run_broker(api, CASE_BY_TYPE[device_type], platform_devices.ports[device_type])
        return cache[device_type]

    return get


def exec_body(run: BrokerRun) -> dict:
    assert run.open.status == 201, f"POST /session: {run.open}"
    assert run.exec is not None and run.exec.status == 200, f"POST /session/{{id}}/exec: {run.exec}"
    assert run.exec.content_type.startswith("application/json"), run.exec
    return run.exec.json


def first_difference(got: str, expected: str) -> str:
    """Where two normalised outputs part: the line number and up to three lines of each from there."""
    g, e = got.split("\n"), expected.split("\n")
    for i in range(max(len(g), len(e))):
        if i >= len(g) or i >= len(e) or g[i] != e[i]:
            return (
                f"first difference at line {i + 1} (broker {len(g)} lines, Netmiko {len(e)}): "
                f"broker {g[i:i + 3]!r}, Netmiko {e[i:i + 3]!r}"
            )
    return "no difference"


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
UNKNOWN_MARKERS = ("Unknown command",)  # FakeNOS's own answer: the command is not known there


@pytest.mark.parametrize("device_type", DEVICE_TYPES)
def test_netmiko_reference_is_sane(netmiko_runs, device_type):
    """Guard the reference: every valid command was known to FakeNOS at the prompt Netmiko
    used, and the refused one carries the platform's refusal text."""
    case = CASE_BY_TYPE[device_type]
    run = netmiko_runs(device_type)
    for cmd in case.commands:
        out = run.outputs[cmd]
        assert out.strip(), f"{cmd!r}: empty output"
        assert case.failure_text not in out, f"{cmd!r} refused: {out[:300]!r}"
        assert not any(m in out for m in UNKNOWN_MARKERS), f"{cmd!r} unknown to FakeNOS: {out[:300]!r}"
    assert case.failure_text in run.outputs[case.invalid], run.outputs[case.invalid]
    # The prompt really is the platform's (the host settings took effect).
    assert run.prompts["after login"].startswith(case.base_prompt), run.prompts
    if case.enable:
        assert run.prompts["after enable"] == f"{case.base_prompt}#", run.prompts


@pytest.mark.parametrize("device_type", DEVICE_TYPES)
def test_session_opens_with_platform_profile(broker_runs, device_type):
    case = CASE_BY_TYPE[device_type]
    run = broker_runs(device_type)
    assert run.open.status == 201, f"POST /session: {run.open}"
    assert run.status_after_open.status == 200, run.status_after_open
    st = run.status_after_open.json
    assert st["device_type"] == case.device_type, st
    assert st["platform"] == case.device_type, st
    assert st["alive"] is True, st


@pytest.mark.parametrize("device_type", DEVICE_TYPES)
def test_status_mode_is_sensible(broker_runs, device_type):
    case = CASE_BY_TYPE[device_type]
    run = broker_runs(device_type)
    assert run.open.status == 201, f"POST /session: {run.open}"
    wanted = sorted(case.modes)
    for label, r in (("after open", run.status_after_open), ("after exec", run.status_after_exec)):
        assert r is not None and r.status == 200, (label, r)
        mode = r.json["mode"]
        assert mode in wanted, f"{label}: mode {mode!r}, want one of {wanted}"


@pytest.mark.parametrize("device_type, command", COMMAND_PAIRS)
def test_output_matches_netmiko(broker_runs, netmiko_runs, device_type, command):
    expected = normalise(netmiko_runs(device_type).outputs[command])
    body = exec_body(broker_runs(device_type))
    assert command in body["outputs"], sorted(body["outputs"])
    got = normalise(body["outputs"][command])
    assert got == expected, first_difference(got, expected)


@pytest.mark.parametrize("device_type", DEVICE_TYPES)
def test_results_failed_flags(broker_runs, netmiko_runs, device_type):
    """`failed` is true for the refused command, false for every command the device accepted."""
    case = CASE_BY_TYPE[device_type]
    reference = netmiko_runs(device_type)
    body = exec_body(broker_runs(device_type))
    results = body["results"]
    assert [r["command"] for r in results] == case.all_commands, results
    for r in results[:-1]:
        assert r["failed"] is False, f"{r['command']!r} accepted by the device but failed: {r.get('error')!r}"
    if case.failure_text not in reference.outputs[case.invalid]:
        pytest.skip(f"FakeNOS answered {case.invalid!r} without {case.failure_text!r}")
    assert results[-1]["failed"] is True, (
        f"{case.invalid!r} refused ({case.failure_text!r}) but not failed: "
        f"{ {k: results[-1].get(k) for k in ('failed', 'error', 'output')} }"
    )


@pytest.mark.parametrize("device_type", DEVICE_TYPES)
def test_session_closes(broker_runs, device_type):
    run = broker_runs(device_type)
    assert run.open.status == 201, f"POST /session: {run.open}"
    assert run.delete_status == 204
