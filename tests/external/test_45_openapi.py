"""The OpenAPI document (``GET /openapi.json``) against the live release broker.

* The document and ``/docs`` are served without a token; the document names the binary's version,
  and every example in it (request bodies, response bodies, field examples) is valid against its
  own schema (jsonschema_rs, which schemathesis brings).
* Real answers of every kind (201, 200 of status/exec/sessions/device-types/health, 500 after a
  missed deadline, 401, 404, 422, 204; the jobs' 202, poll, output, list, cancel and 409) are
  valid against the schema documented for that status, on a Telnet session to the broker's
  built-in demo device (``netdev-broker demo``, 127.0.0.1).
* schemathesis (pinned in requirements.txt) runs its phases (examples, coverage, fuzzing,
  stateful) over every operation with all its checks except two: ``positive_data_acceptance``
  (the broker checks what JSON Schema cannot say: regex syntax, known device types, a key file
  inside key_dir, algorithm names this libssh2 has, a host key policy no weaker than the
  config's) and ``not_a_server_error``, replaced by ``server_errors_only_where_documented``
  (schemathesis_hooks.py); ``too_many_only_where_documented`` adds: a 429 only where documented.
  Then again over exec and status, on a live demo-device session.
* Every request is made with a named ``admin`` token (``api_tokens``): the fuzzed broker has no
  ``api_token``, and its per-token request counter names that token only.

Network: fuzzed requests reach nothing but loopback. The fuzzed broker runs with
``allowed_hosts: [127.0.0.0/8]``; the hooks turn every generated ``host`` into 127.0.0.1 and every
``port`` into a port that refuses connections (bound, never listening), so no name is resolved;
the test then checks both the hooks' log of every body sent and the broker's own log of every
connection attempt. One schemathesis worker: CPython 3.11.7 has a thread-safety bug in ast.parse
(gh-106905, "AST constructor recursion depth mismatch") that Hypothesis hits with two.
"""

from __future__ import annotations

import collections
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import jsonschema_rs
import pytest
from conftest import ALL_CANARIES, CANARY_ADMIN_TOKEN, NAMED_TOKENS, api_tokens, broker_binary, stop_process

HERE = Path(__file__).resolve().parent
HOOKS = HERE / "schemathesis_hooks.py"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
TIMEOUT_CAP = 0.5
OPEN_PATHS = ("/session", "/telnet-session")


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
ADMIN = "automation"  # conftest.NAMED_TOKENS: role admin
assert NAMED_TOKENS[ADMIN] == ("admin", CANARY_ADMIN_TOKEN)


@pytest.fixture(scope="module")
def fuzz_broker(broker_factory):
    # Only a named admin token (api_tokens), no api_token: every request here is made with it.
    # command_timeout: the deadline of a fuzzed command that sets none (the hooks cap the rest).
    return broker_factory(
        "fuzz",
        env_api_token=None,
        api_as=CANARY_ADMIN_TOKEN,
        api_tokens=api_tokens(ADMIN),
        # schemathesis' ignored_auth check sends a wrong token once per operation it gets a 2xx
        # from (about 10 a run); at the default 10 a minute every later request, with the right
        # token too, would be 429. The limiter stays on, out of the fuzzing's reach.
        auth_failures_per_minute=1000,
        allowed_hosts=["127.0.0.0/8"],
        command_timeout=2,
    )


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A 127.0.0.1 port bound by this test and never listening: every connection is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_device(tmp_path_factory) -> Iterator[int]:
    """``netdev-broker demo --port 0``: its fake Cisco IOS Telnet device on 127.0.0.1 (user admin,
    password and enable secret ``cisco``). Yields the device's port."""
    workdir = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETDEV_BROKER_")}
    proc = subprocess.Popen(
        [str(broker_binary()), "demo", "--port", "0"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        seen = b""
        port = None
        while port is None:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise RuntimeError(f"netdev-broker demo did not start: {seen!r}")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                seen += chunk
                m = re.search(rb"device:\s+telnet 127\.0\.0\.1 (\d+)", seen)
                port = int(m.group(1)) if m else None
        yield port
    finally:
        stop_process(proc, signal.SIGINT, grace=10)
        proc.stdout.close()


# ---------------------------------------------------------------------------------------------
# Validation against the document
# ---------------------------------------------------------------------------------------------
def validator(doc: dict, schema: dict):
    """A JSON Schema 2020-12 validator for ``schema``, its ``#/components/...`` refs resolved
    against ``doc``; formats (date-time) are checked too."""
    root = dict(schema)
    root["components"] = doc["components"]
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def resolve(doc: dict, node: dict) -> dict:
    while "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def operation(doc: dict, method: str, template: str) -> dict:
    return doc["paths"][template][method.lower()]


def assert_documented(doc: dict, method: str, template: str, status: int, body) -> None:
    """``body`` (parsed JSON, or None for no body) is what the document says ``status`` of this
    operation carries."""
    responses = operation(doc, method, template)["responses"]
    assert str(status) in responses, f"{method} {template}: {status} is not documented"
    response = resolve(doc, responses[str(status)])
    if "content" not in response:
        assert body is None, f"{method} {template} {status}: no body documented, got {body!r}"
        return
    schema = response["content"]["application/json"]["schema"]
    errors = [e.message for e in validator(doc, schema).iter_errors(body)]
    assert not errors, f"{method} {template} {status}: {errors}\n{json.dumps(body)[:2000]}"


def walk_examples(doc: dict, node, where: str = "#") -> Iterator[tuple[str, dict, object]]:
    """(where, schema, example) for every example in the document."""
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list) and ("type" in node or "anyOf" in node or "$ref" in node):
            for i, ex in enumerate(node["examples"]):
                yield f"{where}/examples/{i}", node, ex
        for key, value in node.items():
            yield from walk_examples(doc, value, f"{where}/{key}")
        media_schema = node.get("schema")
        if isinstance(media_schema, dict):
            if "example" in node:
                yield f"{where}/example", media_schema, node["example"]
            if isinstance(node.get("examples"), dict):
                for name, ex in node["examples"].items():
                    yield f"{where}/examples/{name}", media_schema, resolve(doc, ex)["value"]
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_examples(doc, value, f"{where}/{i}")


def test_document_and_docs_are_public_and_examples_are_valid(fuzz_broker):
    api = fuzz_broker.api
    r = api.get("/openapi.json", token=None)
    assert r.status == 200, r
    assert r.content_type == "application/json"
    doc = r.json
    version = subprocess.run([str(broker_binary()), "--version"], capture_output=True, text=True, timeout=10)
    assert doc["info"]["version"] in version.stdout, (doc["info"]["version"], version.stdout)
    assert doc["openapi"] == "3.1.0"

    page = api.get("/docs", token=None)
    assert page.status == 200 and page.content_type.startswith("text/html"), page
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    for asset in ("/docs/docs.js", "/docs/docs.css"):
        assert api.get(asset, token=None).status == 200
    assert api.get("/sessions", token=None).status == 401

    checked = 0
    for where, schema, example in walk_examples(doc, doc):
        errors = [e.message for e in validator(doc, schema).iter_errors(example)]
        assert not errors, f"{where}: {errors}"
        checked += 1
    assert checked >= 40, checked


def test_real_answers_match_the_document(fuzz_broker, demo_device):
    """Each kind of answer the fuzzing cannot reach without a device, from a real session."""
    api = fuzz_broker.api
    doc = api.get("/openapi.json", token=None).json

    def check(method, template, path, body=None, token=object, expect=None, timeout=60):
        kw = {} if token is object else {"token": token}
        r = api.request(method, path, body, timeout=timeout, **kw)
        parsed = r.json if r.body else None
        if expect is not None:
            assert r.status == expect, r
        assert_documented(doc, method, template, r.status, parsed)
        return r

    check("GET", "/health", "/health", token=None, expect=200)
    check("GET", "/device-types", "/device-types", expect=200)
    check("GET", "/sessions", "/sessions", token=None, expect=401)
    login = {"host": "127.0.0.1", "port": demo_device, "username": "admin", "password": "cisco"}
    check("POST", "/telnet-session", "/telnet-session", {**login, "password": "wrong"}, expect=401)
    check("POST", "/session", "/session", {"host": "127.0.0.1", "username": "u"}, expect=422)
    check("POST", "/session", "/session", {**login, "host": "192.0.2.1", "timeout": 2}, expect=403)
    sid = check("POST", "/telnet-session", "/telnet-session", {**login, "enable_password": "cisco"}, expect=201).json[
        "session_id"
    ]
    try:
        for prefix in ("/session", "/telnet-session"):
            check("GET", f"{prefix}/{{session_id}}/status", f"{prefix}/{sid}/status", expect=200)
        check("GET", "/sessions", "/sessions", expect=200)
        ex = "/session/{session_id}/exec"
        r = check(
            "POST",
            ex,
            f"/session/{sid}/exec",
            {"commands": ["show version", "show nonsense", {"cmd": "copy running-config startup-config", "answer": "Destination filename"}]},
            expect=200,
        )
        results = r.json["results"]
        assert results[1]["failed"] is True and "error" in results[1], r
        assert results[2].get("answered") == 1, r
        check("POST", ex, f"/session/{sid}/exec", {"config": ["interface GigabitEthernet1/0/2", "description x"], "save": True}, expect=200)
        r = check("POST", ex, f"/session/{sid}/exec", {"commands": ["show version", {"cmd": "show clock", "expect": "never-printed"}], "timeout": 0.5}, expect=500)
        assert r.json["command"] == "show clock" and r.json["results"][0]["command"] == "show version", r
        check("POST", ex, f"/session/{sid}/exec", {"commands": ["show version", "show nonsense", "show clock"], "stop_on_error": True}, expect=500)
        # Jobs: 202 and polling, output so far, the list, a retry with the same key (and with
        # another body), cancel, an unknown job, job_timeout.
        jobs = "/session/{session_id}/jobs"
        job = f"{jobs}/{{job_id}}"
        push = {"commands": ["show slow 2", "show clock"], "wait": False, "timeout": 15, "idempotency_key": "test-45-push"}
        r = check("POST", ex, f"/session/{sid}/exec", push, expect=202)
        jid = r.json["job_id"]
        assert r.headers["location"] == r.json["status_url"] == f"/session/{sid}/jobs/{jid}", r
        check("GET", job, f"/session/{sid}/jobs/{jid}", expect=200)
        check("GET", f"{job}/output", f"/session/{sid}/jobs/{jid}/output?from=0", expect=200)
        check("GET", jobs, f"/session/{sid}/jobs", expect=200)
        r = check("GET", job, f"/session/{sid}/jobs/{jid}?wait=30", expect=200)
        assert r.json["state"] == "done" and r.json["status"] == 200, r
        r = check("POST", ex, f"/session/{sid}/exec", push, expect=200)
        assert r.json["job_id"] == jid and r.headers["idempotent-replayed"] == "true", r
        check("POST", ex, f"/session/{sid}/exec", {**push, "commands": ["show clock"]}, expect=422)
        check("DELETE", job, f"/session/{sid}/jobs/{jid}", expect=409)
        check("GET", job, f"/session/{sid}/jobs/nope", expect=404)
        check("GET", job, f"/session/{sid}/jobs/{jid}?wait=soon", expect=422)
        r = check("POST", ex, f"/session/{sid}/exec", {"commands": ["show slow 20"], "wait": False}, expect=202)
        time.sleep(1)
        tjob = "/telnet-session/{session_id}/jobs/{job_id}"
        r = check("POST", f"{tjob}/cancel", f"/telnet-session/{sid}/jobs/{r.json['job_id']}/cancel", expect=200)
        assert r.json["state"] == "cancelled" and r.json["status"] == 409, r
        check("POST", ex, f"/session/{sid}/exec", {"commands": ["show slow 5"], "job_timeout": 1}, expect=500)
        check("POST", ex, f"/session/{sid}/exec", {"commands": [{"cmd": "x", "expect": "("}]}, expect=422)
        check("POST", "/telnet-session/{session_id}/exec", "/telnet-session/nope/exec", {"commands": ["show clock"]}, expect=404)
        check("GET", "/session/{session_id}/status", "/session/nope/status", expect=404)
    finally:
        check("DELETE", "/telnet-session/{session_id}", f"/telnet-session/{sid}", expect=204)
    check("GET", "/session/{session_id}/status", f"/session/{sid}/status", expect=404)


# ---------------------------------------------------------------------------------------------
# schemathesis
# ---------------------------------------------------------------------------------------------
def run_schemathesis(broker, workdir: Path, env_extra: dict, args: list[str], deadline_s: float) -> dict:
    """The schemathesis CLI with the hooks, against ``broker``; returns its JSON report plus the
    hooks' logs."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETDEV_BROKER_", "SCHEMATHESIS_", "NDB_FUZZ_"))}
    env.update(
        SCHEMATHESIS_HOOKS=str(HOOKS),
        NDB_FUZZ_TIMEOUT_CAP=str(TIMEOUT_CAP),
        NDB_FUZZ_SENT_LOG=str(workdir / "sent.jsonl"),
        NDB_FUZZ_STATUS_LOG=str(workdir / "status.jsonl"),
        **env_extra,
    )
    argv = [
        str(SCHEMATHESIS),
        "--no-color",
        "run",
        f"{broker.base_url}/openapi.json",
        "--header",
        f"X-API-Token: {CANARY_ADMIN_TOKEN}",
        "--checks",
        "all",
        "--checks",
        "server_errors_only_where_documented",
        "--checks",
        "too_many_only_where_documented",
        "--exclude-checks",
        "not_a_server_error,positive_data_acceptance",
        "--workers",
        "1",
        "--seed",
        "45",
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
        "--max-response-time",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *args,
    ]
    log_start = broker.log_file.stat().st_size
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=deadline_s)
    seconds = time.monotonic() - t0
    output = proc.stdout + proc.stderr
    (workdir / "output.txt").write_text(output)
    assert report.exists(), output[-5000:]
    data = json.loads(report.read_text())
    assert proc.returncode == 0 and not data["failures"] and not data["errors"], output[-20000:]

    def lines(name):
        path = workdir / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    data["sent"] = lines("sent.jsonl")
    data["statuses"] = collections.Counter((e["op"], e["status"]) for e in lines("status.jsonl"))
    data["seconds"] = seconds
    with open(broker.log_file, "rb") as f:
        f.seek(log_start)
        data["broker_log"] = f.read().decode(errors="replace")
    return data


def summary(capsys, title: str, data: dict) -> None:
    cases = data["test_cases"]
    per_status: collections.Counter = collections.Counter()
    for (_, status), n in data["statuses"].items():
        per_status[status] += n
    with capsys.disabled():
        print(
            f"\n[schemathesis {data['schemathesis_version']}] {title}: {cases['generated']} cases, "
            f"{data['operations']['tested']} operations, {data['seconds']:.1f} s, "
            f"phases {', '.join(k for k, v in data['phases'].items() if v['status'] == 'success')}; "
            f"answers {dict(sorted(per_status.items()))}; warnings: "
            f"{ {k: v for k, v in data['warnings'].items() if v} }"
        )


def test_schemathesis_every_operation(fuzz_broker, closed_port, tmp_path, capsys):
    data = run_schemathesis(
        fuzz_broker,
        tmp_path / "stateless",
        {"NDB_FUZZ_CLOSED_PORT": str(closed_port)},
        ["--max-examples", "20"],
        deadline_s=300,
    )
    summary(capsys, "every operation", data)
    assert data["test_cases"]["generated"] >= 500, data["test_cases"]
    tested = {op for op, _ in data["statuses"]}
    doc = fuzz_broker.api.get("/openapi.json", token=None).json
    documented = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item}
    # schemathesis leaves out the document it was loaded from.
    assert tested == documented - {"GET /openapi.json"}, tested ^ documented

    # Where the broker was pointed: the hooks' record of every open body ...
    assert data["sent"], "no open request was sent"
    for entry in data["sent"]:
        host, port = entry.get("host"), entry.get("port")
        if isinstance(host, str) and host not in ("", "<absent>"):
            assert host == "127.0.0.1", entry
            if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
                assert port == closed_port, entry
    # ... and the broker's own log of every connection it attempted.
    log = data["broker_log"]
    attempts = re.findall(r"cannot connect to (\S+?):(\d+):", log)
    assert attempts, "no connection was attempted"
    assert {(h, int(p)) for h, p in attempts} == {("127.0.0.1", closed_port)}
    assert not re.search(r"cannot resolve|name resolution|not in allowed_hosts", log)
    hosts = set(re.findall(r"session [0-9a-f]{32} host (\S+?):", log))
    assert hosts <= {"127.0.0.1"}, hosts
    # Made with the named admin token: the only token the broker counts requests of.
    metrics = fuzz_broker.api.get("/metrics")
    assert metrics.status == 200, metrics
    by_token = re.findall(r'^netdev_broker_api_requests_by_token_total\{token="([^"]*)"\} (\d+)$', metrics.body.decode(), re.M)
    assert [t for t, _ in by_token] == [ADMIN] and int(by_token[0][1]) >= 500, by_token


def test_schemathesis_exec_and_status_on_a_live_session(fuzz_broker, demo_device, closed_port, tmp_path, capsys):
    data = run_schemathesis(
        fuzz_broker,
        tmp_path / "live",
        {
            "NDB_FUZZ_CLOSED_PORT": str(closed_port),
            "NDB_FUZZ_LIVE_DEVICE_PORT": str(demo_device),
            "NDB_FUZZ_BROKER_URL": fuzz_broker.base_url,
            "NDB_FUZZ_TOKEN": CANARY_ADMIN_TOKEN,
        },
        [
            "--include-path-regex",
            r"^/(telnet-)?session/\{session_id\}/(exec|status)$",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "15",
        ],
        deadline_s=300,
    )
    summary(capsys, "exec and status on a live session", data)
    statuses = data["statuses"]
    assert data["operations"]["tested"] == 4, data["operations"]
    for op in ("POST /session/{session_id}/exec", "POST /telnet-session/{session_id}/exec"):
        assert statuses[(op, 200)] > 0, statuses
        assert statuses[(op, 422)] > 0, statuses
    for op in ("GET /session/{session_id}/status", "GET /telnet-session/{session_id}/status"):
        assert statuses[(op, 200)] > 0, statuses


def test_no_canary_in_the_fuzzed_brokers_outputs(fuzz_broker):
    """Runs last in this file: every request above carried the API token."""
    fuzz_broker.stop()
    leaks = []
    for path in fuzz_broker.workdir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            leaks += [f"{path}: {c}" for c in ALL_CANARIES if c in text]
    assert not leaks, "canary leaked:\n" + "\n".join(leaks)
