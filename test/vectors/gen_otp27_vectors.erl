%% gen_otp27_vectors: prints the C vectors of check_term_codec.c's
%% otp27_vectors case: terms whose encoding or identity changed after
%% OTP 25, as term_to_binary on the running node writes them. Run it on
%% OTP 27 and on OTP 29 (test/otp-root.sh 27|29 ...): both print the same
%% canonical bytes; atom-keyed maps come out in other orders.
%%   erlc -o /tmp test/vectors/gen_otp27_vectors.erl &&
%%   test/otp-root.sh 27 erl -noshell -pa /tmp -s gen_otp27_vectors main
-module(gen_otp27_vectors).
-export([main/0]).

main() ->
    Z = binary_to_term(<<131, 70, 1:1, 0:63>>),
    Port = binary_to_term(<<131, 89, 119, 3, "a@h", 7:32, 3:32>>),
    Atoms = maps:from_list([{list_to_atom([C]), C} || C <- "zyxwvutsrqponmlkjihgfedcba"]),
    Cases = [{"minus_zero", Z},
             {"zero", 0.0},
             {"map_both_zeros", #{0.0 => a, Z => b}},
             {"tuple_minus_zero_key", {Z, neg}},
             {"port", Port},
             {"atom_map_5", #{b => 1, a => 2, c => 3, zz => 4, aa => 5}},
             {"atom_map_26", Atoms},
             {"atom_map_in_tuple", {user, #{name => <<"ann">>, email => <<"a@x">>, age => 7, id => 1}}}],
    io:format("/* gen_otp27_vectors on OTP ~s */~n", [erlang:system_info(otp_release)]),
    [io:format("    {\"~s\", ~s, ~s},~n", [Id, c(term_to_binary(T)), c(canon(T))]) || {Id, T} <- Cases],
    halt().

%% The canonical form (term.h): term_to_binary minor_version 2, with map
%% pairs in the exact term order of their keys, which BEAM applies when it
%% compares two one-key maps (-0.0 before 0.0 from OTP 27).
canon(M) when is_map(M) ->
    Pairs = lists:sort(fun({A, _}, {B, _}) -> #{A => 0} =< #{B => 0} end, maps:to_list(M)),
    iolist_to_binary([<<116, (map_size(M)):32>> | [[canon(K), canon(V)] || {K, V} <- Pairs]]);
canon(T) when is_tuple(T) ->
    iolist_to_binary([<<104, (tuple_size(T))>> | [canon(E) || E <- tuple_to_list(T)]]);
canon(T) ->
    <<131, B/binary>> = term_to_binary(T, [{minor_version, 2}]),
    B.

c(B) ->
    [$", [io_lib:format("\\x~2.16.0b", [X]) || <<X>> <= B], $", ", ", integer_to_list(byte_size(B))].
