#!/usr/bin/env bash
# The seed README's curl walkthrough, step by step, against a running broker and a device.
# Checks status codes, Content-Type and JSON shapes as the seed documents them.
#
# Environment (as in the seed, plus DEVICE_PORT since the device is not on port 22):
#   HOST=http://127.0.0.1:PORT TOKEN=... DEVICE=127.0.0.1 DEVICE_PORT=... USER=... PASS=...
# Needs curl and jq. Every curl call has --max-time. Exit 0 when every check passed.
set -euo pipefail

: "${HOST:?}" "${TOKEN:?}" "${DEVICE:?}" "${DEVICE_PORT:?}" "${USER:?}" "${PASS:?}"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BODY="$WORK/body"
CHECKS=0

fail() {
  echo "not ok - $*"
  echo "  last status: ${CODE:-?}  content-type: ${CTYPE:-?}"
  echo "  last body: $(head -c 2000 "$BODY" 2>/dev/null || true)"
  exit 1
}
ok() { CHECKS=$((CHECKS + 1)); echo "ok - $*"; }

# req METHOD URL [curl args...]: sets CODE, CTYPE; body in $BODY
req() {
  local method=$1 url=$2
  shift 2
  local out
  out=$(curl -sS --max-time 120 -X "$method" -o "$BODY" -w '%{http_code} %{content_type}' "$@" "$url") ||
    fail "curl $method $url failed (exit $?)"
  CODE=${out%% *}
  CTYPE=${out#* }
}

expect_code() { [[ "$CODE" == "$1" ]] || fail "$2: expected HTTP $1, got $CODE"; }
expect_json() { [[ "$CTYPE" == application/json* ]] || fail "$1: Content-Type is '$CTYPE', not application/json"; }
# jq_check DESCRIPTION FILTER [jq args...]: FILTER must yield true on $BODY
jq_check() {
  local what=$1 filter=$2
  shift 2
  jq -e "$@" "$filter" "$BODY" >/dev/null 2>&1 || fail "$what: jq '$filter' is not true"
}

TS_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?\+00:00$'

# --- Health check (no token required) -----------------------------------------------------------
req GET "${HOST}/health"
expect_code 200 "GET /health without token"
expect_json "GET /health"
jq_check "health shape" '.status == "ok" and (.version | type == "string" and length > 0)
  and (.sessions | type == "number" and . >= 0 and . == floor)'
SESSIONS_BEFORE=$(jq -r .sessions "$BODY")
ok "GET /health without token -> 200 {status:ok, version, sessions:$SESSIONS_BEFORE}"

# --- Open an SSH session (the seed's body, plus the device's port) ---------------------------
req POST "${HOST}/session" \
  -H "X-API-Token: ${TOKEN}" \
  -H "Content-Type: application/json" \
  -d "{\"host\":\"${DEVICE}\",\"username\":\"${USER}\",\"password\":\"${PASS}\",\"port\":${DEVICE_PORT}}"
expect_code 201 "POST /session"
expect_json "POST /session"
jq_check "open shape" '(.session_id | type == "string" and test("^[0-9a-f]{32}$")) and .host == $d' --arg d "$DEVICE"
SESSION=$(jq -r .session_id "$BODY")
echo "Session: ${SESSION}"
ok "POST /session -> 201 {session_id (128-bit hex), host}"

req GET "${HOST}/health"
jq_check "health counts the session" '.sessions >= ($n + 1)' --argjson n "$SESSIONS_BEFORE"
ok "GET /health counts the new session"

# --- Session status ------------------------------------------------------------------------------
STATUS_FILTER='.session_id == $s and .alive == true and .host == $d and .device_type == "cisco_ios"
  and (.created_at | type == "string" and test($ts)) and (.last_used | type == "string" and test($ts))
  and (.age_seconds | type == "number" and . >= 0 and . == floor)
  and (.idle_seconds | type == "number" and . >= 0 and . == floor)
  and .idle_seconds <= .age_seconds and .last_used >= .created_at
  and .protocol == "ssh" and has("mode")'
req GET "${HOST}/session/${SESSION}/status" -H "X-API-Token: ${TOKEN}"
expect_code 200 "GET /session/{id}/status"
expect_json "GET /session/{id}/status"
jq_check "status shape" "$STATUS_FILTER" --arg s "$SESSION" --arg d "$DEVICE" --arg ts "$TS_RE"
ok "GET /session/{id}/status -> 200 with session_id, alive, host, device_type, created_at, last_used, age_seconds, idle_seconds, protocol, mode"

# --- Execute commands ----------------------------------------------------------------------------
req POST "${HOST}/session/${SESSION}/exec" \
  -H "X-API-Token: ${TOKEN}" \
  -H "Content-Type: application/json" \
  -d '{"commands":["show version","show ip interface brief"]}'
expect_code 200 "POST /session/{id}/exec"
expect_json "POST /session/{id}/exec"
jq_check "exec outputs" '(.outputs | type == "object" and (keys | sort) == ["show ip interface brief", "show version"])
  and (.outputs["show version"] | contains("Cisco IOS XE Software") and (contains("% Invalid input") | not))
  and (.outputs["show ip interface brief"] | contains("GigabitEthernet1"))'
jq_check "exec results" '(.results | type == "array" and length == 2)
  and ([.results[].command] == ["show version", "show ip interface brief"])
  and all(.results[]; (.output | type == "string") and (.elapsed_ms | type == "number" and . >= 0))'
ok "POST /session/{id}/exec -> 200 {outputs:{show version, show ip interface brief}, results:[2]}"

req GET "${HOST}/session/${SESSION}/status" -H "X-API-Token: ${TOKEN}"
expect_code 200 "status after exec"
jq_check "status after exec" "$STATUS_FILTER" --arg s "$SESSION" --arg d "$DEVICE" --arg ts "$TS_RE"
ok "status still alive after exec"

# --- Error cases ---------------------------------------------------------------------------------
# Wrong token -> 401 (the seed's exact request)
req POST "${HOST}/session" \
  -H "X-API-Token: wrong" \
  -H "Content-Type: application/json" \
  -d '{"host":"1.2.3.4","username":"u","password":"p"}'
expect_code 401 "POST /session with a wrong token"
expect_json "401"
jq_check "401 detail" '.detail | type == "string" and length > 0'
ok "wrong token -> 401 {detail}"

req GET "${HOST}/session/${SESSION}/status"
expect_code 401 "status without a token"
ok "missing token -> 401"

# Session not found -> 404
req GET "${HOST}/session/nonexistent/status" -H "X-API-Token: ${TOKEN}"
expect_code 404 "GET /session/nonexistent/status"
expect_json "404"
jq_check "404 detail" '.detail | type == "string" and length > 0'
ok "unknown session status -> 404 {detail}"

# --- Close the session (idempotent) --------------------------------------------------------------
req DELETE "${HOST}/session/${SESSION}" -H "X-API-Token: ${TOKEN}"
expect_code 204 "DELETE /session/{id}"
[[ ! -s "$BODY" ]] || fail "204 with a body"
ok "DELETE /session/{id} -> 204, empty body"

req DELETE "${HOST}/session/${SESSION}" -H "X-API-Token: ${TOKEN}"
expect_code 204 "DELETE /session/{id} again"
ok "DELETE again -> 204"

req GET "${HOST}/session/${SESSION}/status" -H "X-API-Token: ${TOKEN}"
expect_code 404 "status after delete"
ok "status after delete -> 404"

echo "walkthrough: ${CHECKS} checks passed"
