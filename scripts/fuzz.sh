#!/usr/bin/env bash
# Run every cargo-fuzz target (fuzz/) for a bounded time, one after the other (docs/reliability.md, "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Installs cargo-fuzz (crates.io, --locked) when it is missing. Works on the stable toolchain:
# the targets are built without a sanitizer (`-s none`; they are safe Rust, and libFuzzer's own
# -timeout and -rss_limit_mb still catch hangs and runaway memory), in release mode with debug
# assertions and overflow checks. The broker is linked without its `ssh` feature, so nothing of
# libssh2 or OpenSSL is compiled.
#
# Each target starts from its committed seeds (fuzz/seeds/<target>) and its working corpus
# (fuzz/corpus/<target>, kept between runs, not committed), with its dictionary
# (fuzz/dict/<target>.dict). Per target it prints the executions, exec/s, coverage, corpus size
# and peak RSS from libFuzzer's final lines; the whole log is in $TARGET_DIR/fuzz/logs/.
# A crash (panic, failed assertion, input slower than 10 s, RSS over 1 GiB) leaves the input in
# fuzz/artifacts/<target>/ and makes the script exit 1 after the remaining targets ran.
#
# Environment: FUZZ_TARGETS="a b" runs only those; FUZZ_SANITIZER=address builds with ASan, which
# needs nightly (RUSTUP_TOOLCHAIN=nightly, or RUSTC_BOOTSTRAP=1 on stable) and runs ~5x slower.
# Targets run one at a time (CI has 2 cores).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

SECS=${1:-60}
if ! [[ $SECS =~ ^[0-9]+$ ]] || ((SECS < 1)); then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
  exit 2
fi
SANITIZER=${FUZZ_SANITIZER:-none}
TARGETS=${FUZZ_TARGETS:-"http_head request_body telnet_codec matcher driver"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/fuzz
LOGS=$CARGO_TARGET_DIR/logs
mkdir -p "$LOGS"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  t0=$SECONDS
  cargo install cargo-fuzz --locked || {
    echo "cargo-fuzz could not be installed" >&2
    exit 2
  }
  echo "cargo-fuzz installed in $((SECONDS - t0)) s"
fi
cargo fuzz --version

t0=$SECONDS
if ! cargo fuzz build -s "$SANITIZER"; then
  echo "the fuzz targets do not build" >&2
  exit 2
fi
echo "fuzz targets built in $((SECONDS - t0)) s"

# stat NAME LOG: the value of libFuzzer's final `stat::NAME: value` line.
stat() {
  sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

declare -a ROWS=()
FAILED=()
for t in $TARGETS; do
  corpus=fuzz/corpus/$t
  log=$LOGS/$t.log
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  args=(-max_total_time="$SECS" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1)
  [[ -f fuzz/dict/$t.dict ]] && args+=(-dict="fuzz/dict/$t.dict")
  echo
  echo "== $t: ${SECS}s"
  # The outer timeout only guards against libFuzzer itself not stopping.
  timeout --kill-after=30 $((SECS + 300)) \
    cargo fuzz run -s "$SANITIZER" "$t" "$corpus" "fuzz/seeds/$t" -- "${args[@]}" >"$log" 2>&1
  rc=$?
  # The last status line: DONE at the end of a clean run, else the last before a crash.
  done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse|INITED)[[:space:]]' "$log" | tail -n 1)
  execs=$(stat number_of_executed_units "$log")
  [[ -n $execs ]] || execs=$(sed -nE 's/^#([0-9]+)[[:space:]].*/\1/p' <<<"$done_line")
  rate=$(stat average_exec_per_sec "$log")
  rss=$(stat peak_rss_mb "$log")
  cov=$(grep -oE 'cov: [0-9]+' <<<"$done_line" | grep -oE '[0-9]+')
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$done_line" | cut -d' ' -f2)
  if ((rc == 0)); then
    verdict=ok
  else
    verdict="CRASH (exit $rc)"
    FAILED+=("$t")
    grep -E 'panicked at|^==[0-9]+== ?ERROR|^SUMMARY|Test unit written to|ALARM|out-of-memory' "$log" | head -n 20
    echo "log: $log"
    artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
    echo "reproduce: cargo fuzz run -s $SANITIZER $t ${artifact:-<the input in fuzz/artifacts/$t/>}"
  fi
  printf '%s: executions %s, exec/s %s, cov %s, corpus %s, peak RSS %s MB: %s\n' \
    "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${corp:-?}" "${rss:-?}" "$verdict"
  ROWS+=("$(printf '  %-14s %12s %9s %7s %14s %8s  %s' "$t" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${corp:-?}" "${rss:-?}" "$verdict")")
done

echo
echo "fuzzing summary (${SECS}s per target, sanitizer $SANITIZER):"
printf '  %-14s %12s %9s %7s %14s %8s  %s\n' target executions exec/s cov corpus "RSS MB" result
printf '%s\n' "${ROWS[@]}"
if ((${#FAILED[@]} > 0)); then
  echo "crashed: ${FAILED[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
