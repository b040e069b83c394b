%% term_text_SUITE: the C text layer (term_print, term_parse, term_consult)
%% against BEAM itself: what C prints, erl_parse reads back to the same
%% term and io_lib:format("~w") writes the same text; what BEAM writes
%% with ~p, C reads back to the same term.
-module(term_text_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_suite/1, end_per_suite/1]).
-export([printed_terms_parse_back_equal/1,
         printed_text_equals_io_lib_w/1,
         pids_refs_ports_funs_print_as_w/1,
         c_parses_what_c_prints/1,
         c_parses_what_beam_writes/1,
         consult_file_matches_file_consult/1,
         consult_syntax_corners_match_file_consult/1]).

-define(N, 3000).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [printed_terms_parse_back_equal,
     printed_text_equals_io_lib_w,
     pids_refs_ports_funs_print_as_w,
     c_parses_what_c_prints,
     c_parses_what_beam_writes,
     consult_file_matches_file_consult,
     consult_syntax_corners_match_file_consult].

init_per_suite(Config) ->
    Seed = rand:seed(exsss),
    ct:pal("rand seed: ~p", [Seed]),
    %% term_text_tool follows this node's release (-0.0, map key order)
    true = os:putenv("ETSD_OTP_RELEASE", erlang:system_info(otp_release)),
    Terms = edge_terms() ++ [gen_term(4) || _ <- lists:seq(1, ?N)],
    [{terms, Terms} | Config].

end_per_suite(_Config) ->
    ok.

%% ---- Cases ----------------------------------------------------------

printed_terms_parse_back_equal(Config) ->
    Terms = ?config(terms, Config),
    Texts = print_all(Config, Terms, fun encode/1),
    Bad = [{T, Txt} || {T, Txt} <- lists:zip(Terms, Texts), not parses_to(Txt, T)],
    check_none(Bad).

printed_text_equals_io_lib_w(Config) ->
    Terms = ?config(terms, Config),
    Texts = print_all(Config, Terms, fun encode/1),
    %% Floats must read back exactly (checked above); their text is
    %% compared too, since C writes the shortest form as BEAM does. Maps
    %% over 32 keys are left out: ~w writes them in hash order, which C
    %% does not know; so are small maps of atom keys from OTP 26, which ~w
    %% writes in the map's own atom order (term_to_binary on OTP 29 was
    %% seen to write another one).
    Bad = [{T, Txt, W} || {T, Txt} <- lists:zip(Terms, Texts),
                          not map_order_unknown(T), W <- [w(T)], Txt =/= W],
    check_none(Bad).

pids_refs_ports_funs_print_as_w(Config) ->
    Port = open_port({spawn, "cat"}, []),
    X = 5,
    Terms = [self(), make_ref(), Port, fun lists:map/2, fun() -> X end,
             {self(), [make_ref()], #{p => Port}},
             erlang:alias()],
    Texts = print_all(Config, Terms, fun(T) -> term_to_binary(T) end),
    port_close(Port),
    Bad = [{T, Txt} || {T, Txt} <- lists:zip(Terms, Texts), Txt =/= w(T)],
    check_none(Bad).

%% C's printed text, parsed by C: the canonical bytes of the original.
c_parses_what_c_prints(Config) ->
    Terms = ?config(terms, Config),
    Texts = print_all(Config, Terms, fun encode/1),
    Results = run_tool(Config, "parse", records(Texts)),
    Bad = [{T, Txt, R} || {T, Txt, R} <- lists:zip3(Terms, Texts, Results),
                          not same_term(R, T)],
    check_none(Bad).

%% BEAM's ~w and ~p text, parsed by C.
c_parses_what_beam_writes(Config) ->
    Terms = ?config(terms, Config),
    Texts = [unicode:characters_to_binary(io_lib:format(F, [T]))
             || T <- Terms, F <- ["~w", "~p"]],
    Results = run_tool(Config, "parse", records(Texts)),
    Expect = lists:append([[T, T] || T <- Terms]),
    Bad = [{T, Txt, R} || {T, Txt, R} <- lists:zip3(Expect, Texts, Results),
                          not same_term(R, T)],
    check_none(Bad).

consult_file_matches_file_consult(Config) ->
    Terms = ?config(terms, Config),
    Text = unicode:characters_to_binary(
             [io_lib:format("~p.~n", [T]) || T <- Terms]),
    consult_matches(Config, Text).

consult_syntax_corners_match_file_consult(Config) ->
    Text = <<"%% hand-written corners of Erlang literal syntax\n"
             "16#FF. -16#ff. 2#1010. 36#zZ. 1_000_000. $a. $\\n. $\\x{101}. -$a. $\\s.\n"
             "1.0e10. 1.5E-3. 2.0e+2. 10_0.5. - 5. +5.\n"
             "\"ab\" \"cd\". \"\\x{100}\\101\\^A\\q\". 'a\\'b'. '\\x{17D}'.\n"
             "[1|[2|[3]]]. [1|[]]. [$a|\"bc\"]. [1,2|3]. [a|\"\"].\n"
             "<<\"ab\",99,1:3>>. <<256,-1>>. <<>>. <<1:16>>.\n"
             "#{b => 1, a => 2}. #{a => 1, a => 2}. #{1 => int, 1.0 => float}.\n"
             "# { k => [v] }. {}. {a, {b, {c}}}.\n"
             "'after'. 'Hello'. ''. node@host. 'é'. é.\n"
             "123456789012345678901234567890123456789012345678901234567890.\n"
             "-123456789012345678901234567890. 18446744073709551616. -2147483649.\n"
             "[1, % comment inside\n 2]. % last\n"/utf8>>,
    consult_matches(Config, Text).

%% ---- Helpers --------------------------------------------------------

consult_matches(Config, Text) ->
    File = filename:join(?config(priv_dir, Config),
                         "consult_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = file:write_file(File, Text),
    {ok, Want} = file:consult(File),
    Out = File ++ ".out",
    {0, _} = etsd_test_lib:run(etsd_test_lib:tool_path("term_text_tool"),
                               ["consult", File, Out]),
    {ok, <<Status:32/signed, Rest/binary>>} = file:read_file(Out),
    0 = Status,
    Got = [B || <<Len:32, B:Len/binary>> <= Rest],
    length(Want) =:= length(Got) orelse ct:fail({count, length(Want), length(Got)}),
    Bad = [{W, G} || {W, G} <- lists:zip(Want, Got), not same_term({ok, G}, W)],
    check_none(Bad).

%% T's ETF in one of the forms BEAM writes, chosen at random.
encode(T) ->
    Opts = case rand:uniform(4) of
               1 -> [];
               2 -> [compressed];
               3 -> [{minor_version, 1}];
               4 -> [{minor_version, 2}]
           end,
    term_to_binary(T, Opts).

print_all(Config, Terms, Enc) ->
    Results = run_tool(Config, "print", records([Enc(T) || T <- Terms])),
    [case R of
         {ok, Txt} -> Txt;
         {error, E} -> ct:fail({print_failed, T, E})
     end || {T, R} <- lists:zip(Terms, Results)].

records(Bins) -> [<<(byte_size(B)):32, B/binary>> || B <- Bins].

run_tool(Config, Mode, Input) ->
    Base = filename:join(?config(priv_dir, Config),
                         Mode ++ "_" ++ integer_to_list(erlang:unique_integer([positive]))),
    In = Base ++ ".in",
    Out = Base ++ ".out",
    ok = file:write_file(In, Input),
    case etsd_test_lib:run(etsd_test_lib:tool_path("term_text_tool"), [Mode, In, Out]) of
        {0, _} -> ok;
        Other -> ct:fail({tool_failed, Mode, Other})
    end,
    {ok, Bin} = file:read_file(Out),
    [case St of
         0 -> {ok, B};
         _ -> {error, St}
     end || <<St:32/signed, Len:32, B:Len/binary>> <= Bin].

%% The C result (canonical bytes without 131) decodes to a term =:= T,
%% and equals BEAM's own encoding when BEAM's is canonical.
%% (BEAM's canonical check runs before the match: after T2 =:= T the OTP 25
%% compiler may use T2 for T, and 0.0 =:= -0.0.)
same_term({ok, B}, T) ->
    Canonical = beam_canonical(T),
    Beam = term_to_binary(T, [{minor_version, 2}]),
    case catch binary_to_term(<<131, B/binary>>) of
        T2 when T2 =:= T -> (not Canonical) orelse <<131, B/binary>> =:= Beam;
        _ -> false
    end;
same_term(_, _) -> false.

%% BEAM writes maps over 32 keys in hash order, from OTP 26 the atom keys
%% of small maps in atom table order, and keeps -0.0 (canonical only from
%% OTP 27); elsewhere its minor_version 2 encoding is the canonical one.
beam_canonical(T) when is_map(T) ->
    map_size(T) =< 32 andalso
        (release() < 26 orelse length([K || K <- maps:keys(T), is_atom(K)]) =< 1) andalso
        lists:all(fun({K, V}) -> beam_canonical(K) andalso beam_canonical(V) end,
                  maps:to_list(T));
beam_canonical(T) when is_tuple(T) -> beam_canonical(tuple_to_list(T));
beam_canonical([H | Tl]) -> beam_canonical(H) andalso beam_canonical(Tl);
%% The bytes, not a -0.0 literal: OTP 25's compiler pools the literals
%% 0.0 and -0.0 as one.
beam_canonical(F) when is_float(F) -> release() >= 27 orelse <<F/float>> =/= <<128, 0:56>>;
beam_canonical(_) -> true.

release() -> list_to_integer(erlang:system_info(otp_release)).

map_order_unknown(T) when is_map(T) ->
    map_size(T) > 32 orelse
        (release() >= 26 andalso length([K || K <- maps:keys(T), is_atom(K)]) > 1) orelse
        map_order_unknown(maps:to_list(T));
map_order_unknown(T) when is_tuple(T) -> map_order_unknown(tuple_to_list(T));
map_order_unknown([H | Tl]) -> map_order_unknown(H) orelse map_order_unknown(Tl);
map_order_unknown(_) -> false.

parses_to(Txt, T) ->
    try
        {ok, Toks, _} = erl_scan:string(unicode:characters_to_list(Txt) ++ "."),
        {ok, T2} = erl_parse:parse_term(Toks),
        T2 =:= T
    catch _:_ -> false
    end.

w(T) -> unicode:characters_to_binary(io_lib:format("~w", [T])).

check_none([]) -> ok;
check_none(Bad) ->
    ct:pal("~p failures, first ones: ~p", [length(Bad), lists:sublist(Bad, 5)]),
    ct:fail({failures, length(Bad)}).

%% ---- Terms ----------------------------------------------------------

edge_terms() ->
    [0, 255, 256, -1, 2147483647, -2147483648, 2147483648, -2147483649,
     1 bsl 63, -(1 bsl 63), (1 bsl 64) - 1, 1 bsl 64, 1 bsl 2040, -(1 bsl 2048) + 7,
     0.0, -0.0, 1.0, -1.0, 0.1, 1/3, 1.0e10, 1.0e15, 1.0e16, 123456789012345.0,
     1000.0, 100.0, 12500.0, 0.0001, 1.0e-5, 5.0e-324, 2.2250738585072014e-308,
     1.7976931348623157e308, -1.7976931348623157e308, 9007199254740993.0,
     '', 'a', 'A', '_', 'a b', 'after', 'of', 'andalso', 'é', 'ß', 'ÿ', 'Ž', 'a\x{101}b',
     '\x{1F600}', 'a\nb', 'it\'s', 'a\\b', '\d', '\x{7f}', '\x{80}', '\x{9f}', '\x{a0}',
     'node@host', 'Elixir.Phoenix.PubSub', '1a', 'aB9_@', '÷', '×x', 'a×',
     list_to_atom(lists:duplicate(255, $z)), list_to_atom(lists:duplicate(255, 16#101)),
     [], "abc", "", [0], [255], [256], lists:seq(0, 255), lists:duplicate(70000, 1),
     [1 | 2], [a | b], [[] | []], ["a" | "b"], [1, 2 | 3.0],
     {}, {{}}, {a, {b, {c, {d}}}}, list_to_tuple(lists:seq(1, 300)),
     <<>>, <<0>>, <<"abc">>, <<255, 0, 10>>, <<1:1>>, <<1:7>>, <<"ab", 3:3>>,
     binary:copy(<<"x">>, 1000),
     #{}, #{a => 1}, #{1 => a, 1.0 => b}, #{[] => [], {} => {}, <<>> => <<>>},
     maps:from_list([{I, I} || I <- lists:seq(1, 40)]),
     maps:from_list([{{k, I}, <<I>>} || I <- lists:seq(1, 33)]),
     #{#{a => 1} => #{b => 2}},
     {forward_to_local, <<"new">>, {new, {<<"u@x">>, <<"t">>}}, 'Elixir.Phoenix.PubSub'}].

gen_term(0) -> gen_leaf();
gen_term(D) ->
    case rand:uniform(10) of
        N when N =< 5 -> gen_leaf();
        6 -> list_to_tuple([gen_term(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        7 -> [gen_term(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)];
        8 -> [gen_term(D - 1) || _ <- lists:seq(1, rand:uniform(3))] ++ gen_leaf();
        9 -> maps:from_list([{gen_term(D - 1), gen_term(D - 1)}
                             || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        10 -> gen_string()
    end.

gen_leaf() ->
    case rand:uniform(9) of
        1 -> gen_atom();
        2 -> rand:uniform(600) - 300;
        3 -> gen_bignum();
        4 -> gen_float();
        5 -> gen_binary();
        6 -> gen_bitstring();
        7 -> gen_string();
        8 -> rand:uniform(1 bsl 40) - (1 bsl 39);
        9 -> []
    end.

gen_atom() ->
    Len = rand:uniform(12) - 1,
    Chars = [gen_atom_char() || _ <- lists:seq(1, Len)],
    list_to_atom(Chars).

gen_atom_char() ->
    case rand:uniform(6) of
        1 -> rand:uniform(26) + $a - 1;
        2 -> rand:uniform(26) + $A - 1;
        3 -> lists:nth(rand:uniform(6), "_@09 '");
        4 -> rand:uniform(256) - 1;
        5 -> rand:uniform(16#2FF);
        6 -> lists:nth(rand:uniform(4), [16#1F600, 16#10FFFF, 16#FFFD, 16#3042])
    end.

gen_bignum() ->
    Bits = 32 + rand:uniform(1200),
    <<V:Bits>> = crypto_bytes(Bits),
    case rand:uniform(2) of 1 -> V; 2 -> -V end.

crypto_bytes(Bits) ->
    Bytes = (Bits + 7) div 8,
    <<B:Bits/bitstring, _/bitstring>> =
        list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, Bytes)]),
    B.

gen_float() ->
    case rand:uniform(3) of
        1 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(40) - 20);
        2 -> float(rand:uniform(100000));
        3 -> any_float()
    end.

%% A float from 64 random bits, skipping NaN and infinities.
any_float() ->
    <<F:64/float>> = <<(rand:uniform(2) - 1):1, (rand:uniform(2047) - 1):11,
                       (rand:uniform(1 bsl 52) - 1):52>>,
    F.

gen_binary() ->
    list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(12) - 1)]).

gen_bitstring() ->
    B = gen_binary(),
    N = rand:uniform(7),
    <<B/binary, (rand:uniform(1 bsl N) - 1):N>>.

gen_string() ->
    [case rand:uniform(4) of
         1 -> rand:uniform(95) + 31;
         2 -> rand:uniform(256) - 1;
         3 -> rand:uniform(16#D7FF);
         4 -> 16#10000 + rand:uniform(16#FFFF)
     end || _ <- lists:seq(1, rand:uniform(8) - 1)].
