"""Netmiko parity: the broker's output for a command is what Netmiko's send_command returns.

Netmiko (ConnectHandler(device_type="cisco_ios") + enable()) and the broker talk to the same
FakeNOS device; outputs are compared after normalising line endings and trailing whitespace
only (conftest.normalise)."""

from __future__ import annotations

import pytest
from conftest import normalise
from netmiko import ConnectHandler

# Commands FakeNOS knows in enable mode (show ip interface brief comes from our inventory),
# plus one it rejects: the device's rejection text is output too, with status 200.
PARITY_COMMANDS = [
    "show version",
    "show ip interface brief",
    "show running-config",
    "show nonsense",
]


@pytest.fixture(scope="module")
def netmiko_outputs(fakenos_device) -> dict:
    conn = ConnectHandler(
        device_type="cisco_ios",
        host=fakenos_device.host,
        port=fakenos_device.port,
        username=fakenos_device.username,
        password=fakenos_device.password,
        conn_timeout=30,
        auth_timeout=30,
        banner_timeout=30,
        timeout=60,
        session_log=None,
    )
    try:
        conn.enable()
        assert conn.find_prompt() == f"{fakenos_device.name}#"
        return {cmd: conn.send_command(cmd, read_timeout=60) for cmd in PARITY_COMMANDS}
    finally:
        conn.disconnect()


def test_netmiko_reference_is_sane(netmiko_outputs):
    """Guard the reference itself: FakeNOS answered, enable worked, the inventory loaded."""
    assert "Cisco IOS XE Software" in netmiko_outputs["show version"]
    assert "GigabitEthernet1" in netmiko_outputs["show ip interface brief"]
    assert "hostname SW-01" in netmiko_outputs["show running-config"]
    assert "% Invalid input" in netmiko_outputs["show nonsense"]


@pytest.fixture(scope="module")
def broker_exec(api, fakenos_device, netmiko_outputs) -> dict:
    sid = api.open_session(fakenos_device)
    try:
        r = api.post(f"/session/{sid}/exec", {"commands": PARITY_COMMANDS})
        assert r.status == 200, r
        assert r.content_type.startswith("application/json"), r
        return r.json
    finally:
        assert api.delete(f"/session/{sid}").status == 204


@pytest.mark.parametrize("command", PARITY_COMMANDS)
def test_output_matches_netmiko(broker_exec, netmiko_outputs, command):
    assert command in broker_exec["outputs"], sorted(broker_exec["outputs"])
    got = normalise(broker_exec["outputs"][command])
    expected = normalise(netmiko_outputs[command])
    assert got == expected


def test_results_in_order(broker_exec):
    results = broker_exec["results"]
    assert [r["command"] for r in results] == PARITY_COMMANDS
    for r in results:
        assert r["output"] == broker_exec["outputs"][r["command"]]
        ms = r["elapsed_ms"]
        assert isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms >= 0, r


def test_repeated_command_kept_in_results(api, fakenos_device, netmiko_outputs):
    """`outputs` is keyed by command, so a repeat collapses there; `results` keeps both."""
    sid = api.open_session(fakenos_device)
    try:
        cmds = ["show ip interface brief", "show ip interface brief"]
        r = api.post(f"/session/{sid}/exec", {"commands": cmds})
        assert r.status == 200, r
        body = r.json
        assert [x["command"] for x in body["results"]] == cmds
        for x in body["results"]:
            assert normalise(x["output"]) == normalise(netmiko_outputs["show ip interface brief"])
    finally:
        assert api.delete(f"/session/{sid}").status == 204
