"""GET /metrics read by the reference parser: prometheus-client's text_string_to_metric_families.

A broker of its own (exact counts), the FakeNOS device: one open, one exec, a wrong password
(auth_failed), a closed port (connect_error), a DELETE; then every family parses, has the type
the broker declared, and the numbers are exactly those. metrics_public lets a scrape in without
the token.
"""

from __future__ import annotations

import socket

from prometheus_client.parser import text_string_to_metric_families

from conftest import CANARY_WRONG_PASSWORD

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def scrape(api, **kw) -> dict:
    r = api.get("/metrics", **kw)
    assert r.status == 200, r
    assert r.content_type == CONTENT_TYPE, r
    text = r.body.decode("utf-8")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # Every family the broker writes, with the type it declared.
    assert {n: f.type for n, f in families.items()} == {
        "netdev_broker_build_info": "gauge",
        "netdev_broker_sessions": "gauge",
        "netdev_broker_session_opens": "counter",
        "netdev_broker_session_closes": "counter",
        "netdev_broker_guard_events": "counter",
        "netdev_broker_api_requests_by_token": "counter",
        "netdev_broker_api_auth_failures": "counter",
        "netdev_broker_session_connections_lost": "counter",
        "netdev_broker_keepalive_failures": "counter",
        "netdev_broker_exec_requests": "counter",
        "netdev_broker_exec_duration_seconds": "histogram",
        "netdev_broker_http_requests": "counter",
    }, text
    for f in families.values():
        assert f.documentation, f.name
    return families


def samples(families: dict, family: str, sample: str) -> dict:
    return {tuple(sorted(s.labels.items())): s.value for s in families[family].samples if s.name == sample}


def test_metrics_parse_with_prometheus_client(broker_factory, fakenos_device):
    b = broker_factory("metrics")
    api = b.api
    assert api.get("/metrics", token=None).status == 401

    sid = api.open_session(fakenos_device)
    r = api.post(f"/session/{sid}/exec", {"commands": ["show clock"]})
    assert r.status == 200, r
    dev = fakenos_device
    r = api.post("/session", {"host": dev.host, "port": dev.port, "username": dev.username, "password": CANARY_WRONG_PASSWORD})
    assert r.status == 401, r
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    r = api.post("/session", {"host": "127.0.0.1", "port": closed, "username": "u", "password": "p"})
    assert r.status == 502, r
    assert api.delete(f"/session/{sid}").status == 204

    f = scrape(api)
    build = f["netdev_broker_build_info"].samples
    assert len(build) == 1 and build[0].value == 1 and set(build[0].labels) == {"version", "libssh2"}
    assert all(v == 0 for v in samples(f, "netdev_broker_sessions", "netdev_broker_sessions").values())
    assert samples(f, "netdev_broker_session_opens", "netdev_broker_session_opens_total") == {
        (("protocol", "ssh"), ("result", "ok")): 1,
        (("protocol", "ssh"), ("result", "auth_failed")): 1,
        (("protocol", "ssh"), ("result", "connect_error")): 1,
    }
    assert samples(f, "netdev_broker_session_closes", "netdev_broker_session_closes_total") == {(("reason", "delete"),): 1}
    assert samples(f, "netdev_broker_exec_requests", "netdev_broker_exec_requests_total") == {(("result", "ok"),): 1}
    h = "netdev_broker_exec_duration_seconds"
    buckets = samples(f, h, h + "_bucket")
    assert buckets[(("le", "+Inf"),)] == 1 == samples(f, h, h + "_count")[()]
    assert samples(f, h, h + "_sum")[()] > 0
    http = samples(f, "netdev_broker_http_requests", "netdev_broker_http_requests_total")
    assert http[(("method", "POST"), ("route", "/session/{id}/exec"), ("status", "200"))] == 1
    assert http[(("method", "DELETE"), ("route", "/session/{id}"), ("status", "204"))] == 1
    assert http[(("method", "GET"), ("route", "/metrics"), ("status", "401"))] == 1
    assert not any(sid in v for labels in http for _, v in labels)


def test_metrics_public(broker_factory):
    b = broker_factory("metrics-public", metrics_public=True)
    scrape(b.api, token=None)
    assert b.api.get("/sessions", token=None).status == 401
