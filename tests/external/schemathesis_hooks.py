"""Schemathesis hooks for test_45_openapi.py: every fuzzed request stays on loopback.

Loaded by the schemathesis CLI (``SCHEMATHESIS_HOOKS=<this file>``) that the test runs.
Configuration comes from the environment:

* ``NDB_FUZZ_CLOSED_PORT``: a 127.0.0.1 port that refuses connections (bound, never listening).
* ``NDB_FUZZ_TIMEOUT_CAP``: seconds; a valid ``timeout``/``read_timeout`` above it is lowered to it,
  and an exec without ``timeout`` gets it.
* ``NDB_FUZZ_SENT_LOG``: a file; the ``host`` and ``port`` of every body sent to an open operation
  are appended to it as JSON lines, so the test can prove where the broker was pointed.
* ``NDB_FUZZ_STATUS_LOG``: a file; the operation and status of every answer, as JSON lines.
* Live mode, for exec and status on a real session: ``NDB_FUZZ_LIVE_DEVICE_PORT`` (the demo
  device's Telnet port on 127.0.0.1), ``NDB_FUZZ_BROKER_URL`` and ``NDB_FUZZ_TOKEN``. Every
  generated ``session_id`` is replaced by a live session's id; the session is replaced by a new
  one after an answer that may leave it unusable (404, 410, 500).

Two layers, both idempotent:

1. ``before_call`` rewrites the generated case before it is sent: in ``POST /session`` and
   ``POST /telnet-session`` every string ``host`` but ``""`` becomes ``127.0.0.1`` (so no name is
   ever resolved, and only loopback is ever connected to), every ``port`` the broker would accept
   (and a missing one) becomes the closed port, and timeouts are capped. Values the broker refuses
   anyway (a 422 before any connection) are left alone, so negative cases stay negative.
2. The JSON serializer applies the same rewrite to whatever body reaches the wire (also from code
   paths that do not call ``before_call``) and writes the log.

The broker under test also runs with ``allowed_hosts: [127.0.0.0/8]``.

``server_errors_only_where_documented`` replaces schemathesis' ``not_a_server_error``: 500 only
from an exec that names its failed command with the partial output (a missed deadline), 502/504
only from opening a session (the closed port refuses, a tiny ``timeout`` passes); nothing else.

``too_many_only_where_documented``: a 429 only from an operation whose ``responses`` list 429, with
a JSON ``detail``; the wrong-token limiter's 429 carries ``Retry-After`` too. (The fuzzed broker
runs with a limiter too high to be reached by schemathesis' wrong-token probes, and without
``max_sessions``: no 429 is expected at all.)
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from typing import Any, Optional

import schemathesis

# Routes that open a connection to a device (a session, a probe, a one-shot exec).
OPEN_PATHS = (
    "/session",
    "/telnet-session",
    "/probe",
    "/telnet-probe",
    "/api/v2.0/netmiko/send_command",
    "/api/v2.0/netmiko/send_config",
)
LOOPBACK = "127.0.0.1"

# Rust's str::trim() strips Unicode White_Space; so does the broker before parsing numbers.
RUST_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
INT_RE = re.compile(r"[+-]?[0-9]+")
NUM_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
I64 = 2**63


def closed_port() -> int:
    return int(os.environ["NDB_FUZZ_CLOSED_PORT"])


def timeout_cap() -> float:
    return float(os.environ.get("NDB_FUZZ_TIMEOUT_CAP", "2"))


def api_int(v: Any) -> Optional[int]:
    """The integer the broker reads from ``v`` (wire.rs ``Fields::int``), or None if it refuses it."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if -I64 <= v < I64 else None
    if isinstance(v, float):
        return int(v) if v.is_integer() and abs(v) < 1e15 else None
    if isinstance(v, str):
        t = v.strip(RUST_WS)
        if INT_RE.fullmatch(t) and -I64 <= int(t) < I64:
            return int(t)
    return None


def api_seconds(v: Any) -> Optional[float]:
    """The number of seconds the broker reads from ``v`` (``Fields::seconds``), or None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        t = v.strip(RUST_WS)
        if NUM_RE.fullmatch(t):
            f = float(t)
            return f if f not in (float("inf"), float("-inf")) else None
    return None


def _cap(obj: dict, key: str, lo: float, hi: float) -> None:
    s = api_seconds(obj.get(key))
    if s is not None and lo <= s <= hi and s > timeout_cap():
        obj[key] = timeout_cap()


def _pin(obj: dict) -> None:
    """A host the broker would use becomes loopback, a port it would use the closed port."""
    if isinstance(obj.get("host"), str) and obj["host"] != "":
        obj["host"] = LOOPBACK
    port = api_int(obj.get("port"))
    if obj.get("port") is None or (port is not None and 1 <= port <= 65535):
        obj["port"] = closed_port()


def loopback_only(path: str, body: Any) -> Any:
    """Rewrite a body in place (and return it) so that it points the broker at loopback only."""
    if not isinstance(body, dict):
        return body
    if path in OPEN_PATHS:
        _pin(body)
        _cap(body, "timeout", 0.1, 3600)
        # Jump hosts are connected to first: every hop goes to the closed port too.
        hops = body.get("jump")
        if isinstance(hops, list):
            for hop in hops:
                if isinstance(hop, dict):
                    _pin(hop)
        # The Netmiko routes take the port (and more) from connection_options.
        opts = body.get("connection_options")
        if isinstance(opts, dict):
            _pin(opts)
            if isinstance(opts.get("host"), str):
                opts["host"] = LOOPBACK
    elif path.endswith("/exec"):
        if body.get("timeout") is None:
            # The deadline of every command that sets none (the broker's default is 30 s).
            body["timeout"] = timeout_cap()
        _cap(body, "timeout", 0.1, 86400)
        commands = body.get("commands")
        if isinstance(commands, list):
            for item in commands:
                if isinstance(item, dict):
                    _cap(item, "read_timeout", 0.1, 86400)
                    _cap(item, "timeout", 0.1, 86400)
    return body


def record(path: str, body: Any) -> None:
    log = os.environ.get("NDB_FUZZ_SENT_LOG")
    if log and path in OPEN_PATHS:
        entry = {"path": path, "body_type": type(body).__name__}
        if isinstance(body, dict):
            entry.update(host=body.get("host", "<absent>"), port=body.get("port", "<absent>"))
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


_live: dict = {"id": None, "dirty": True}


def _broker(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        os.environ["NDB_FUZZ_BROKER_URL"] + path,
        data=data,
        method=method,
        headers={"X-API-Token": os.environ["NDB_FUZZ_TOKEN"], "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return r.status, json.loads(raw) if raw else None


def live_session() -> str:
    """The id of a usable Telnet session on the demo device (127.0.0.1), opened when needed."""
    if _live["dirty"]:
        if _live["id"]:
            _broker("DELETE", f"/session/{_live['id']}")
        status, body = _broker(
            "POST",
            "/telnet-session",
            {"host": LOOPBACK, "port": int(os.environ["NDB_FUZZ_LIVE_DEVICE_PORT"]), "username": "admin",
             "password": "cisco", "enable_password": "cisco", "timeout": 10},
        )
        assert status == 201, (status, body)
        _live.update(id=body["session_id"], dirty=False)
    return _live["id"]


def live_mode() -> bool:
    return bool(os.environ.get("NDB_FUZZ_LIVE_DEVICE_PORT"))


@schemathesis.hook
def before_call(context, case, **kwargs):
    loopback_only(case.operation.path, case.body)
    if live_mode() and "session_id" in (case.path_parameters or {}):
        case.path_parameters["session_id"] = live_session()


@schemathesis.hook
def after_call(context, case, response):
    log = os.environ.get("NDB_FUZZ_STATUS_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"op": case.operation.label, "status": response.status_code}) + "\n")
    if live_mode() and response.status_code in (404, 410, 500):
        _live["dirty"] = True


@schemathesis.serializer("application/json")
def loopback_json(ctx, value):
    path = ctx.case.operation.path
    if isinstance(value, (bytes, bytearray)):
        # Raw bytes only come from explicit raw examples; the document has none. Parse and guard.
        try:
            value = json.loads(value)
        except ValueError:
            record(path, "<raw bytes>")
            return bytes(value)
    value = loopback_only(path, value)
    record(path, value)
    return json.dumps(value, allow_nan=False).encode()


@schemathesis.check
def server_errors_only_where_documented(ctx, response, case):
    status = response.status_code
    if status < 500:
        return None
    path = case.operation.path
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if status == 500 and path.endswith("/exec") and isinstance(body, dict):
        if isinstance(body.get("command"), str) and isinstance(body.get("partial_output"), str):
            return None
    if status in (502, 504) and path in OPEN_PATHS and isinstance(body, dict):
        return None
    raise AssertionError(f"server error {status} from {case.operation.label}: {response.content[:500]!r}")


@schemathesis.check
def too_many_only_where_documented(ctx, response, case):
    if response.status_code != 429:
        return None
    responses = (case.operation.definition.raw or {}).get("responses", {})
    if not any(str(k) in ("429", "4XX") for k in responses):
        raise AssertionError(f"429 from {case.operation.label}, which does not document it: {response.content[:500]!r}")
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not (isinstance(body, dict) and isinstance(body.get("detail"), str)):
        raise AssertionError(f"429 from {case.operation.label} without a JSON detail: {response.content[:500]!r}")
    if "wrong API token" in body["detail"] and not (response.headers.get("retry-after") or response.headers.get("Retry-After")):
        raise AssertionError(f"the limiter's 429 from {case.operation.label} without Retry-After")
    return None
