#!/usr/bin/env bash
# Decoding records as maps with atom keys, as OTP 26 and later send them:
# their small maps hold atom keys in atom table order, not term order, so
# term_canon sorts every map. 200,000 maps of 6 atom keys, written by
# term_to_binary on OTP $OTP (default 27, run in its Debian root through
# test/otp-root.sh; 25 writes them in term order, for comparison). Times
# binary_to_term there and term_canon here, median of 5 each.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OTP=${OTP:-27}
make -s "$BUILD/bench_term_decode" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
test/otp-root.sh "$OTP" erl -noshell -eval '
    [File] = init:get_plain_arguments(),
    Users = [#{email => <<"user", (integer_to_binary(N))/binary, "@example.com">>,
               token => <<"tok", (integer_to_binary(N))/binary>>, id => N,
               name => <<"n", (integer_to_binary(N))/binary>>, age => N rem 90,
               active => true} || N <- lists:seq(1, 200000)],
    Bin = term_to_binary(Users, [{minor_version, 2}]),
    ok = file:write_file(File, Bin),
    Times = [begin
                 erlang:garbage_collect(),
                 {T, L} = timer:tc(fun() -> binary_to_term(Bin) end),
                 200000 = length(L),
                 T / 1000
             end || _ <- lists:seq(1, 5)],
    io:format("otp ~s keys_as_sent ~w~n", [erlang:system_info(otp_release), maps:keys(hd(Users))]),
    io:format("beam_binary_to_term_ms ~.1f~n", [lists:nth(3, lists:sort(Times))]),
    halt().' -extra "$tmp/maps.etf" > "$tmp/beam.txt"
"$BUILD/bench_term_decode" "$tmp/maps.etf" 5 > "$tmp/c.txt"
cat "$tmp/beam.txt" "$tmp/c.txt"
beam=$(awk '/beam_binary_to_term_ms/ {print $2}' "$tmp/beam.txt")
c=$(awk '/c_canon_ms/ {print $2}' "$tmp/c.txt")
awk -v b="$beam" -v c="$c" 'BEGIN { printf "ratio_beam_over_c %.1f\n", b / c }'
