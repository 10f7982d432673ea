"""Behaviour while a command runs on a real (foreign) SSH server, and after a missed deadline.

FakeNOS echoes ~10 ms per input byte, so a long command line keeps a session busy for a few
seconds. Meanwhile: /health and status answer at once (no HTTP worker waits on a device), a
second exec on the same session gets 409 at once (never queued), and DELETE answers 204 at once."""

from __future__ import annotations

import threading
import time

# ~300 bytes of input: ~3 s of FakeNOS echo. Unknown to FakeNOS -> "% Invalid input" (status 200).
SLOW_COMMAND = "show " + "x" * 300


def start_exec(api, sid, commands) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run():
        t0 = time.monotonic()
        box["response"] = api.post(f"/session/{sid}/exec", {"commands": commands}, timeout=120)
        box["seconds"] = time.monotonic() - t0

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def wait_until_busy(sid_exec_started: float, seconds: float = 0.8) -> None:
    time.sleep(max(0.0, sid_exec_started + seconds - time.monotonic()))


def test_busy_session_409_and_health_stays_fast(api, fakenos_device):
    sid = api.open_session(fakenos_device)
    try:
        started = time.monotonic()
        t, box = start_exec(api, sid, [SLOW_COMMAND])
        wait_until_busy(started)
        assert t.is_alive(), f"the slow command finished too early to test anything: {box}"

        t0 = time.monotonic()
        health = api.get("/health", token=None, timeout=10)
        health_s = time.monotonic() - t0
        assert health.status == 200, health
        assert health_s < 0.5, f"/health took {health_s:.2f}s while an exec ran"

        t0 = time.monotonic()
        status = api.get(f"/session/{sid}/status", timeout=10)
        status_s = time.monotonic() - t0
        assert status.status == 200 and status.json["alive"] is True, status
        assert status_s < 0.5, f"status took {status_s:.2f}s while an exec ran"

        t0 = time.monotonic()
        busy = api.post(f"/session/{sid}/exec", {"commands": ["show version"]}, timeout=10)
        busy_s = time.monotonic() - t0
        assert busy.status == 409, busy
        assert isinstance(busy.json.get("detail"), str), busy
        assert busy_s < 0.5, f"409 took {busy_s:.2f}s (must not be queued)"
        assert t.is_alive(), "the slow command ended before the checks: they proved nothing"

        t.join(timeout=120)
        assert not t.is_alive()
        r = box["response"]
        assert r.status == 200, r
        assert "% Invalid input" in r.json["outputs"][SLOW_COMMAND], r

        # The session is usable again afterwards.
        again = api.post(f"/session/{sid}/exec", {"commands": ["show version"]})
        assert again.status == 200, again
        assert "Cisco IOS XE Software" in again.json["outputs"]["show version"], again
    finally:
        assert api.delete(f"/session/{sid}").status == 204


def test_delete_while_exec_runs(api, fakenos_device):
    sid = api.open_session(fakenos_device)
    started = time.monotonic()
    t, box = start_exec(api, sid, [SLOW_COMMAND])
    wait_until_busy(started)
    assert t.is_alive()
    t0 = time.monotonic()
    d = api.delete(f"/session/{sid}", timeout=10)
    delete_s = time.monotonic() - t0
    assert d.status == 204, d
    assert delete_s < 0.5, f"DELETE took {delete_s:.2f}s while an exec ran (must answer at once)"
    # The running exec ends (one way or another) within a short deadline, not after the device.
    t.join(timeout=30)
    assert not t.is_alive(), "exec still hanging 30 s after DELETE"
    assert box["response"].status in (200, 404, 410, 500), box["response"]
    assert api.get(f"/session/{sid}/status").status == 404
    assert api.delete(f"/session/{sid}").status == 204


def test_missed_deadline_is_500_then_session_recovers(api, fakenos_device):
    """A command past its per-exec deadline -> 500 naming the command; the session then reads
    the prompt back (FakeNOS returns it after ~3 s) and the next exec's output is clean."""
    sid = api.open_session(fakenos_device)
    try:
        t0 = time.monotonic()
        r = api.post(f"/session/{sid}/exec", {"commands": [SLOW_COMMAND], "timeout": 1}, timeout=60)
        took = time.monotonic() - t0
        assert r.status == 500, r
        assert SLOW_COMMAND in r.json["detail"], r
        assert took < 2.9, f"a 1 s deadline answered after {took:.1f}s"

        r = api.post(f"/session/{sid}/exec", {"commands": ["show version", "show ip interface brief"]}, timeout=120)
        assert r.status == 200, r
        out = r.json["outputs"]
        assert out["show version"].lstrip("\n").startswith("Cisco IOS XE Software"), r
        assert "% Invalid input" not in out["show version"], "the timed-out command's answer leaked in"
        assert out["show ip interface brief"].startswith("Interface"), r
    finally:
        assert api.delete(f"/session/{sid}").status == 204
