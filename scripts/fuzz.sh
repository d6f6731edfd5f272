#!/usr/bin/env bash
# Bounded fuzzing of the beacon parser/validator and the bounded gunzip (fuzz/, cargo-fuzz).
#
#   scripts/fuzz.sh [SECONDS]     default 60: the TOTAL fuzzing time, split evenly across the
#                                 targets (at least 1 s each); building comes on top of it.
#
# Targets (fuzz/fuzz_targets/): parse (bytes -> beacon::parse, invariants of accepted beacons),
# parse_structured (mostly-valid beacons from `arbitrary` data, same oracle), gunzip
# (http::gunzip_bounded never panics, never returns more than its limit, Ok = whole body).
# Needs only stable Rust and crates.io: installs cargo-fuzz if missing; RUSTC_BOOTSTRAP=1 lets the
# stable compiler accept the -Z flags cargo-fuzz passes. The working corpus (fuzz/corpus/<target>,
# seeded from fuzz/seeds/<target>) persists between runs; crashes land in fuzz/artifacts/<target>/,
# full logs in fuzz/artifacts/<target>.log. Exits non-zero if any target crashed or failed to build.
#
# Environment: FUZZ_TARGETS="parse gunzip" (a subset), FUZZ_SANITIZER=address|none (default
# address; `none` is faster but misses memory errors in unsafe code).
set -euo pipefail
cd "$(dirname "$0")/.."

total="${1:-60}"
case "$total" in '' | *[!0-9]*)
  echo "usage: $0 [SECONDS]" >&2
  exit 2
  ;;
esac
read -r -a targets <<<"${FUZZ_TARGETS:-parse parse_structured gunzip}"
sanitizer="${FUZZ_SANITIZER:-address}"
per=$((total / ${#targets[@]}))
[ "$per" -ge 1 ] || per=1

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

build_args=(-s "$sanitizer")

echo "== building fuzz targets (sanitizer: $sanitizer)"
start=$SECONDS
cargo fuzz build "${build_args[@]}"
echo "== built in $((SECONDS - start)) s; fuzzing ${targets[*]} for $per s each"

mkdir -p fuzz/artifacts
failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  if [ -d "fuzz/seeds/$t" ]; then
    cp fuzz/seeds/"$t"/* "$corpus"/
  fi
  extra=()
  [ "$t" != parse ] || extra+=(-dict=fuzz/dict/beacon.dict)
  log="fuzz/artifacts/$t.log"
  echo "== fuzzing $t for $per s (log: $log)"
  status=0
  cargo fuzz run "${build_args[@]}" "$t" "$corpus" -- \
    -max_total_time="$per" -timeout=30 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED|NEW|REDUCE|pulse)' "$log" | tail -n 1 |
    grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+' || true)
  line="$t: ${execs:-?} executions (${rate:-?}/s; budget $per s); ${cov:-no coverage line}"
  if [ "$status" -ne 0 ]; then
    line="$line; FAILED (exit $status)"
    failed+=("$t")
    echo "---- $t failed (full output: $log)"
    # The panic message (or sanitizer report), then cargo-fuzz's "Failing input" block.
    grep -m 1 -A 1 -E 'panicked at' "$log" || true
    grep -m 1 -E '^(==[0-9]+== *ERROR|SUMMARY):' "$log" || true
    grep -m 1 -E '^Base64:' "$log" || true
    sed -n '/^Failing input:/,/^Minimize/p' "$log"
    if ! grep -qE 'panicked at|ERROR:|Failing input' "$log"; then tail -n 40 "$log"; fi
    echo "----"
  fi
  echo "$line"
  summary+=("$line")
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed or failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/; reproduce with" \
    "RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>)" >&2
  exit 1
fi
