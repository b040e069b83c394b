#!/usr/bin/env bash
# Decoding the seed app's table as a sync message carries it: the list of
# 1,000,000 users {<<"userN@example.com">>, <<"tokN">>} as term_to_binary
# (about 43 MB). Times binary_to_term on BEAM and term_canon (decode,
# validate, canonical encode) in C on the same bytes, median of 5 each, and
# prints both and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
make -s "$BUILD/bench_term_decode" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
erl -noshell -eval '
    [File] = init:get_plain_arguments(),
    Users = [{<<"user", (integer_to_binary(N))/binary, "@example.com">>,
              <<"tok", (integer_to_binary(N))/binary>>} || N <- lists:seq(1, 1000000)],
    Bin = term_to_binary(Users),
    ok = file:write_file(File, Bin),
    Times = [begin
                 erlang:garbage_collect(),
                 {T, L} = timer:tc(fun() -> binary_to_term(Bin) end),
                 1000000 = length(L),
                 T / 1000
             end || _ <- lists:seq(1, 5)],
    io:format("beam_binary_to_term_ms ~.1f~n", [lists:nth(3, lists:sort(Times))]),
    halt().' -extra "$tmp/users.etf" > "$tmp/beam.txt"
"$BUILD/bench_term_decode" "$tmp/users.etf" 5 > "$tmp/c.txt"
cat "$tmp/beam.txt" "$tmp/c.txt"
beam=$(awk '/beam_binary_to_term_ms/ {print $2}' "$tmp/beam.txt")
c=$(awk '/c_canon_ms/ {print $2}' "$tmp/c.txt")
awk -v b="$beam" -v c="$c" 'BEGIN { printf "ratio_beam_over_c %.1f\n", b / c }'
