"""device_type names: the broker accepts every name the installed Netmiko accepts.

* src/platform/netmiko_device_types.txt (compiled into the broker) is exactly the installed
  Netmiko's ``netmiko.ssh_dispatcher.CLASS_MAPPER`` keys.
* ``GET /device-types`` answers ``{"device_types": [...], "profiles": {name: profile}}``: every
  Netmiko name is listed; each name maps to the profile it runs on (``cisco_xe`` -> ``cisco_ios``,
  a name with no profile of its own such as ``dell_os10`` -> ``generic``).
* ``POST /session`` with a name nobody knows is 422 and the message lists known names; a
  Netmiko-only name opens on the ``generic`` profile.
"""

from __future__ import annotations

import re

import pytest
from conftest import REPO
from netmiko.ssh_dispatcher import CLASS_MAPPER

LIST_FILE = REPO / "src" / "platform" / "netmiko_device_types.txt"
# The profiles the broker has of its own (test_11_platform_parity.py runs each of these).
PLATFORM_PROFILES = [
    "cisco_ios",
    "cisco_nxos",
    "cisco_xr",
    "arista_eos",
    "juniper_junos",
    "hp_procurve",
    "huawei_vrp",
    "linux",
]
UNKNOWN_NAME = "nosuch_os_9000"
NETMIKO_ONLY_NAME = "dell_os10"  # Netmiko knows it, the broker has no profile of that name


def listed_names() -> list:
    lines = (line.strip() for line in LIST_FILE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_list_file_is_installed_netmikos_class_mapper():
    listed = listed_names()
    assert len(listed) == len(set(listed)), sorted({n for n in listed if listed.count(n) > 1})
    netmiko = set(CLASS_MAPPER)
    assert not (netmiko - set(listed)), f"in Netmiko, not in {LIST_FILE.name}: {sorted(netmiko - set(listed))}"
    assert not (set(listed) - netmiko), f"in {LIST_FILE.name}, not in Netmiko: {sorted(set(listed) - netmiko)}"


@pytest.fixture(scope="module")
def device_types(api) -> dict:
    r = api.get("/device-types")
    assert r.status == 200, r
    assert r.content_type.startswith("application/json"), r
    return r.json


def test_device_types_lists_every_netmiko_name(device_types):
    names = device_types["device_types"]
    assert isinstance(names, list) and all(isinstance(n, str) for n in names), names
    missing = sorted(set(CLASS_MAPPER) - set(names))
    assert not missing, f"Netmiko names missing from GET /device-types: {missing}"


def test_device_types_maps_names_to_profiles(device_types):
    assert "profiles" in device_types, f"no `profiles` in GET /device-types: keys {sorted(device_types)}"
    profiles = device_types["profiles"]
    assert isinstance(profiles, dict), profiles
    assert set(profiles) == set(device_types["device_types"]), (
        sorted(set(device_types["device_types"]) - set(profiles)),
        sorted(set(profiles) - set(device_types["device_types"])),
    )
    assert profiles.get("cisco_xe") == "cisco_ios", profiles.get("cisco_xe")
    assert profiles.get(NETMIKO_ONLY_NAME) == "generic", profiles.get(NETMIKO_ONLY_NAME)
    for name in PLATFORM_PROFILES + ["generic"]:
        assert profiles.get(name) == name, (name, profiles.get(name))
    # Every profile named is a profile: it maps to itself.
    not_profiles = sorted({p for p in profiles.values() if profiles.get(p) != p})
    assert not not_profiles, not_profiles


def _message(body) -> str:
    detail = body.get("detail")
    if isinstance(detail, list):
        return " ".join(str(d.get("msg", "")) for d in detail if isinstance(d, dict))
    return str(detail)


def test_unknown_device_type_is_422_listing_known_names(api, fakenos_device):
    r = api.post(
        "/session",
        {
            "host": fakenos_device.host,
            "port": fakenos_device.port,
            "username": fakenos_device.username,
            "password": fakenos_device.password,
            "device_type": UNKNOWN_NAME,
        },
    )
    assert r.status == 422, r
    msg = _message(r.json)
    assert UNKNOWN_NAME in msg, msg
    absent = [n for n in PLATFORM_PROFILES + ["generic"] if not re.search(rf"\b{re.escape(n)}\b", msg)]
    assert not absent, f"known names not in the 422 message: {absent}; message starts {msg[:300]!r}"


def test_netmiko_only_name_opens_on_generic_profile(api, fakenos_device):
    """dell_os10 against the FakeNOS cisco_ios host: Netmiko accepts the name, so the broker
    does, on its generic profile (any prompt ending in #, >, $ or %)."""
    sid = api.open_session(fakenos_device, device_type=NETMIKO_ONLY_NAME)
    try:
        r = api.get(f"/session/{sid}/status")
        assert r.status == 200, r
        st = r.json
        assert st["device_type"] == NETMIKO_ONLY_NAME, st
        assert st["platform"] == "generic", st
        assert st["alive"] is True, st
        ex = api.post(f"/session/{sid}/exec", {"commands": ["show ip interface brief"], "timeout": 20}, timeout=60)
        assert ex.status == 200, ex
        assert "GigabitEthernet1" in ex.json["outputs"]["show ip interface brief"], ex
    finally:
        assert api.delete(f"/session/{sid}").status == 204
