#!/usr/bin/env bash
# Soak and abuse runs of issue 8 (items 6, 7 and 8's 100,000 requests) against the release
# binary. The tests are #[ignore]d Rust tests in tests/it/soak.rs; this builds what they need,
# runs them one at a time and keeps their output.
#
#   scripts/soak.sh cycles      # item 6: 10,000 open/close cycles, 20% failing handshakes
#   scripts/soak.sh hold        # item 7: 200 sessions held 30 minutes, exec on each every 30 s
#   scripts/soak.sh malformed   # item 8: 100,000 malformed requests
#   scripts/soak.sh all         # the three, in that order (about 45 minutes)
#
# Settings (environment; defaults in brackets):
#   cycles:    SOAK_CYCLES [10000]  SOAK_FAIL_PCT [20]  SOAK_WARMUP [200]
#   hold:      SOAK_SESSIONS [200]  SOAK_MINUTES [30]  SOAK_EXEC_EVERY [30] (s, per session)
#              SOAK_SAMPLE_EVERY [60] (s)
#   malformed: SOAK_REQUESTS [100000]  SOAK_SEED [1592590344] (decimal)
#   all:       SOAK_PARALLEL [4] (client threads)
#   NETDEV_BROKER_BIN   the broker under test [target/release/netdev-broker, built here]
#   SOAK_HARNESS_RELEASE=1  build the test harness (fake device, clients) in release too; the
#                       default debug harness is enough and saves a long LTO build
#   SOAK_OUT            where the logs go [target/soak]
#   ABUSE_KEEP_LOGS=1   keep the broker's own log and config (under $TMPDIR) after the run
#
# Each run prints tables (samples of the broker's RSS, peak RSS, fds and threads from
# /proc/PID) and one line starting with RESULT; the exit status is non-zero if an assertion
# failed (leaked fds or threads, RSS growth, a wrong answer, a panic in the broker's log).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -eq 1 ]] || usage
case $1 in
  cycles | hold | malformed) MODES=("$1") ;;
  all) MODES=(cycles hold malformed) ;;
  *) usage ;;
esac

OUT=${SOAK_OUT:-$ROOT/target/soak}
mkdir -p "$OUT"
PROFILE=()
if [[ ${SOAK_HARNESS_RELEASE:-0} == 1 ]]; then
  PROFILE=(--release)
fi

if [[ -z ${NETDEV_BROKER_BIN:-} ]]; then
  cargo build --release --bin netdev-broker
  export NETDEV_BROKER_BIN=$ROOT/target/release/netdev-broker
fi
[[ -x $NETDEV_BROKER_BIN ]] || { echo "soak: $NETDEV_BROKER_BIN is not executable" >&2; exit 2; }
cargo test "${PROFILE[@]}" --test it --no-run

status=0
for mode in "${MODES[@]}"; do
  log=$OUT/soak-$mode-$(date +%Y%m%d-%H%M%S).log
  echo "== soak $mode: $NETDEV_BROKER_BIN ($("$NETDEV_BROKER_BIN" --version | head -1)); log $log"
  if cargo test "${PROFILE[@]}" --test it "soak::soak_$mode" -- --ignored --exact --nocapture \
    --test-threads 1 2>&1 | tee "$log"; then
    echo "== soak $mode: passed"
  else
    echo "== soak $mode: FAILED (see $log)"
    status=1
  fi
done
exit $status
