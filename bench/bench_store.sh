#!/usr/bin/env bash
# bench_store.sh: store/ vs ETS on the same work in one run: insert and
# lookup of N seed users {<<"userI@example.com">>, <<"tokI">>} from a single
# process/thread, and memory per object. Prints medians of RUNS runs and
# the ratios. Usage: bench/bench_store.sh [N [RUNS]]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-5}
BUILD=${BUILD:-build}
make -s "$BUILD/bench_store_bench" >/dev/null

c_out=$("$BUILD/bench_store_bench" "$N" "$RUNS")

# ETS: objects and keys are built before the clock starts, as the C side
# gets its ETF bytes ready-made; one process, compiled loops.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
erlc -o "$tmp" bench/bench_store_ets.erl
ets_out=$(erl -noshell -pa "$tmp" -run bench_store_ets main "$N" "$RUNS")

get() { printf '%s\n%s\n' "$c_out" "$ets_out" | awk -v k="$1" '$1 == k { print $2 }'; }

echo "objects $N, median of $RUNS runs, single thread / single process"
printf '%-28s %10s %10s %10s\n' "" "etsd" "ETS" "ratio"
ci=$(get c_insert_ns); ei=$(get ets_insert_ns)
cl=$(get c_lookup_ns); el=$(get ets_lookup_ns)
cm=$(get c_bytes_per_object); em=$(get ets_bytes_per_object)
awk -v ci="$ci" -v ei="$ei" -v cl="$cl" -v el="$el" -v cm="$cm" -v em="$em" 'BEGIN {
    printf "%-28s %10.1f %10.1f %9.2fx faster\n", "insert ns/op", ci, ei, ei / ci
    printf "%-28s %10.2f %10.2f\n", "insert Mops/s", 1000 / ci, 1000 / ei
    printf "%-28s %10.1f %10.1f %9.2fx faster\n", "lookup ns/op", cl, el, el / cl
    printf "%-28s %10.2f %10.2f\n", "lookup Mops/s", 1000 / cl, 1000 / el
    printf "%-28s %10.1f %10.1f %9.2fx of ETS\n", "memory bytes/object", cm, em, cm / em
}'
echo "(etsd memory: heap growth measured with mallinfo2; ETS: ets:info(T, memory) * wordsize)"
