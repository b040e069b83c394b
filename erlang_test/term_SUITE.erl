%% term_SUITE: the C codec (term/codec.c, compare.c, hash.c) against a real
%% BEAM. BEAM generates thousands of random and edge-case terms, encodes each
%% with term_to_binary in every form, and build/term_tool canonicalizes,
%% compares and sorts them; BEAM then checks every answer. term_tool follows
%% the term semantics of this node's OTP release (ETSD_OTP_RELEASE).
-module(term_SUITE).

-include_lib("common_test/include/ct.hrl").

-export([suite/0, all/0, init_per_suite/1, end_per_suite/1]).
-export([canonical_form_decodes_to_original/1,
         every_encoding_gives_same_canonical_bytes/1,
         canonical_form_is_minor_version_2/1,
         canonical_bytes_equal_iff_exactly_equal/1,
         compare_agrees_with_beam_order/1,
         sort_agrees_with_lists_sort/1]).

-define(RANDOM_TERMS, 3000).

-define(PAIRS, 6000).
-define(SORT_LISTS, 150).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [compare_agrees_with_beam_order,
     sort_agrees_with_lists_sort,
     canonical_form_decodes_to_original,
     every_encoding_gives_same_canonical_bytes,
     canonical_form_is_minor_version_2,
     canonical_bytes_equal_iff_exactly_equal].

init_per_suite(Config) ->
    Seed = case os:getenv("TERM_SUITE_SEED") of
               false -> erlang:phash2(erlang:unique_integer()) + 1;
               S -> list_to_integer(S)
           end,
    ct:pal("random seed ~p (set TERM_SUITE_SEED to repeat)", [Seed]),
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 5}),
    Tool = etsd_test_lib:tool_path("term_tool"),
    true = filelib:is_regular(Tool),
    true = os:putenv("ETSD_OTP_RELEASE", erlang:system_info(otp_release)),
    Terms = edge_terms() ++ [gen(4) || _ <- lists:seq(1, ?RANDOM_TERMS)],
    Encs = [[], [compressed], [{minor_version, 1}], [{minor_version, 2}]],
    Dir = ?config(priv_dir, Config),
    Canon = canon_all(Tool, Dir, [term_to_binary(T, O) || T <- Terms, O <- Encs]),
    %% Kept out of Config: CT prints Config in every test log.
    persistent_term:put(?MODULE, lists:zip(Terms, group4(Canon))),
    [{tool, Tool} | Config].

end_per_suite(_Config) ->
    persistent_term:erase(?MODULE),
    persistent_term:erase({?MODULE, ids}),
    ok.

%% ---- canonical form ----------------------------------------------------

canonical_form_decodes_to_original(Config) ->
    Bad = [{T, Rc} || {T, [{Rc, C, _} | _]} <- both(Config),
                      not decodes_to(Rc, C, T)],
    none(Bad).

every_encoding_gives_same_canonical_bytes(Config) ->
    Bad = [{T, Res} || {T, Res} <- both(Config),
                       length(lists:usort(Res)) =/= 1],
    none(Bad).

%% term.h: the canonical form is term_to_binary(T, [{minor_version, 2}])
%% except for maps over 32 keys, atom-keyed maps from OTP 26 and -0.0
%% before OTP 27.
canonical_form_is_minor_version_2(Config) ->
    Checked = [{T, C} || {T, [{0, C, _} | _]} <- both(Config), plain(T)],
    true = length(Checked) > ?RANDOM_TERMS div 2,
    Bad = [{T, C} || {T, C} <- Checked,
                     <<131, C/binary>> =/= term_to_binary(T, [{minor_version, 2}])],
    none(Bad).

canonical_bytes_equal_iff_exactly_equal(Config) ->
    Tool = ?config(tool, Config),
    Pairs = pairs(?PAIRS) ++ exact_pairs(),
    Flat = lists:append([[term_to_binary(A), term_to_binary(B, [{minor_version, 2}])]
                         || {A, B} <- Pairs]),
    Res = canon_all(Tool, ?config(priv_dir, Config), Flat),
    Bad = check_exact(Pairs, Res, []),
    ct:pal("~p pairs, ~p exactly equal",
           [length(Pairs), length([x || {A, B} <- Pairs, A =:= B])]),
    none(Bad).

%% Before OTP 27 a map over 32 keys may hold both 0.0 and -0.0 as keys
%% (hashed apart); its canonical form would repeat a key, so term_canon
%% refuses it with -EPROTO.
decodes_to(Rc, _C, T) when Rc =/= 0 -> Rc =:= -71 andalso zero_keys_collide(T);
decodes_to(0, C, T) -> same(binary_to_term(<<131, C/binary>>), norm_zero(T)).

zero_keys_collide(T) -> not zeros_distinct() andalso zero_keys_collide1(T).

zero_keys_collide1(M) when is_map(M) ->
    map_size(norm_zero(M)) < map_size(M) orelse
        lists:any(fun zero_keys_collide1/1, maps:keys(M) ++ maps:values(M));
zero_keys_collide1([H | T]) -> zero_keys_collide1(H) orelse zero_keys_collide1(T);
zero_keys_collide1(T) when is_tuple(T) -> zero_keys_collide1(tuple_to_list(T));
zero_keys_collide1(_) -> false.

check_exact([], [], Bad) -> Bad;
check_exact([{A, B} | Ps], [{0, CA, HA}, {0, CB, HB} | Rs], Bad) ->
    Eq = same(norm_zero(A), norm_zero(B)),
    Ok = ((CA =:= CB) =:= Eq) andalso (not Eq orelse HA =:= HB),
    check_exact(Ps, Rs, if Ok -> Bad; true -> [{A, B, CA, CB} | Bad] end);
check_exact([{A, B} = P | Ps], [{RcA, _, _} = RA, {RcB, _, _} = RB | Rs], Bad) ->
    Ok = (RcA =:= 0 orelse zero_keys_collide(A)) andalso (RcB =:= 0 orelse zero_keys_collide(B)),
    check_exact(Ps, Rs, if Ok -> Bad; true -> [{P, RA, RB} | Bad] end).

%% ---- order -------------------------------------------------------------

compare_agrees_with_beam_order(Config) ->
    Tool = ?config(tool, Config),
    Pairs = [{norm_zero(A), norm_zero(B)} || {A, B} <- pairs(?PAIRS)] ++ exact_pairs(),
    In = [[rec(term_to_binary(A)), rec(term_to_binary(B))] || {A, B} <- Pairs],
    Out = run_tool(Tool, "cmp", ?config(priv_dir, Config), In),
    Signs = [S || <<S:8/signed>> <= Out],
    length(Signs) =:= length(Pairs) orelse ct:fail({short_output, length(Signs)}),
    Bad = [{A, B, S, beam_cmp(A, B)} || {{A, B}, S} <- lists:zip(Pairs, Signs),
                                        S =/= beam_cmp(A, B)],
    ct:pal("~p pairs: ~p less, ~p equal, ~p greater",
           [length(Pairs), count(-1, Signs), count(0, Signs), count(1, Signs)]),
    none(Bad).

sort_agrees_with_lists_sort(Config) ->
    Tool = ?config(tool, Config),
    Lists = [[sort_elem() || _ <- lists:seq(1, 2 + rand:uniform(40))]
             || _ <- lists:seq(1, ?SORT_LISTS)],
    In = [[<<(length(L)):32>> | [rec(term_to_binary(T)) || T <- L]] || L <- Lists],
    Out = run_tool(Tool, "sort", ?config(priv_dir, Config), In),
    Bad = check_sorted(Lists, Out, []),
    none(Bad).

check_sorted([], <<>>, Bad) -> Bad;
check_sorted([L | Ls], Out, Bad) ->
    N = length(L),
    <<Idx:(4 * N)/binary, Rest/binary>> = Out,
    CSorted = [lists:nth(I + 1, L) || <<I:32>> <= Idx],
    BSorted = lists:sort(L),
    %% lists:sort/1 may order ==-equal elements either way; compare by ==
    Ok = lists:all(fun({X, Y}) -> X == Y end, lists:zip(CSorted, BSorted)),
    check_sorted(Ls, Rest, if Ok -> Bad; true -> [{L, CSorted, BSorted} | Bad] end).

beam_cmp(A, B) when A < B -> -1;
beam_cmp(A, B) when A > B -> 1;
beam_cmp(_, _) -> 0.

count(X, L) -> length([Y || Y <- L, Y =:= X]).

%% ---- running the tool ----------------------------------------------------

rec(B) -> [<<(byte_size(B)):32>>, B].

run_tool(Tool, Cmd, Dir, IoList) ->
    Tag = integer_to_list(erlang:unique_integer([positive])),
    In = filename:join(Dir, Cmd ++ "_" ++ Tag ++ ".in"),
    Out = filename:join(Dir, Cmd ++ "_" ++ Tag ++ ".out"),
    ok = file:write_file(In, IoList),
    case etsd_test_lib:run(Tool, [Cmd, In, Out]) of
        {0, _} -> ok;
        Other -> ct:fail({term_tool, Cmd, Other})
    end,
    {ok, Bin} = file:read_file(Out),
    Bin.

canon_all(Tool, Dir, Bins) ->
    Out = run_tool(Tool, "canon", Dir, [rec(B) || B <- Bins]),
    [{Rc, C, H} || <<Rc:32/signed, Len:32, C:Len/binary, H:64>> <= Out].

group4([A, B, C, D | Rest]) -> [[A, B, C, D] | group4(Rest)];
group4([]) -> [].

both(_Config) -> persistent_term:get(?MODULE).

%% Reports the first failures briefly (terms here can be huge) and fails.
none([]) -> ok;
none(Bad) ->
    [ct:pal("failure: ~P", [B, 14]) || B <- lists:sublist(Bad, 3)],
    ct:fail({failures, length(Bad)}).

%% Terms whose canonical form must equal term_to_binary minor_version 2.
plain(F) when is_float(F) -> zeros_distinct() orelse not is_minus_zero(F);
plain(M) when is_map(M) ->
    map_size(M) =< 32 andalso atom_keys_in_order(M) andalso
        lists:all(fun plain/1, maps:keys(M) ++ maps:values(M));
plain([H | T]) -> plain(H) andalso plain(T);
plain(T) when is_tuple(T) -> lists:all(fun plain/1, tuple_to_list(T));
plain(F) when is_function(F) ->
    {env, Env} = erlang:fun_info(F, env),
    lists:all(fun plain/1, Env);
plain(_) -> true.

is_minus_zero(F) -> <<F/float>> =:= <<1:1, 0:63>>.

%% OTP 26 and later write the atom keys of a small map in atom table
%% order, not term order.
atom_keys_in_order(M) ->
    release() < 26 orelse length([K || K <- maps:keys(M), is_atom(K)]) =< 1.

release() -> list_to_integer(erlang:system_info(otp_release)).

%% OTP 27: 0.0 =/= -0.0. Built at run time, so no compiler folds it.
zeros_distinct() -> minus_zero() =/= binary_to_term(<<131, 70, 0:64>>).

%% OTP 25 quirk: 0.0 =:= -0.0, yet a map over 32 keys with key -0.0 is not
%% =:= the same map with key 0.0 (their hashes differ). The canonical form
%% writes 0.0, so compare against the term with every -0.0 made 0.0. From
%% OTP 27 -0.0 is a term of its own, kept as it is.
norm_zero(T) ->
    case zeros_distinct() of
        true -> T;
        false -> fold_zero(T)
    end.

fold_zero(F) when is_float(F) -> F + 0.0;
fold_zero([H | T]) -> [fold_zero(H) | fold_zero(T)];
fold_zero(T) when is_tuple(T) -> list_to_tuple(fold_zero(tuple_to_list(T)));
fold_zero(M) when is_map(M) ->
    maps:from_list([{fold_zero(K), fold_zero(V)} || {K, V} <- maps:to_list(M)]);
fold_zero(X) -> X.

%% =:= with maps compared by content. OTP 25 compares maps over 32 keys by
%% their hash layout, and that differs for =:= keys such as external refs
%% whose node entry was recreated: even binary_to_term(term_to_binary(M))
%% is not =:= M for such a map (checked).
same(A, B) when is_map(A), is_map(B) ->
    map_size(A) =:= map_size(B) andalso same(sorted_pairs(A), sorted_pairs(B));
same([A | As], [B | Bs]) -> same(A, B) andalso same(As, Bs);
same(A, B) when is_tuple(A), is_tuple(B) ->
    tuple_size(A) =:= tuple_size(B) andalso same(tuple_to_list(A), tuple_to_list(B));
same(A, B) -> A =:= B.

%% Pairs in term order; keys that are == but not =:= (1 and 1.0) are
%% ordered by their encoding.
sorted_pairs(M) ->
    [{K, V} || {K, _, V} <- lists:sort([{K, term_to_binary(K), V} || {K, V} <- maps:to_list(M)])].

%% ---- term generation ----------------------------------------------------

minus_zero() -> binary_to_term(<<131, 70, 1:1, 0:63>>).

atoms() ->
    ['', a, b, ab, 'B', 'caf\x{e9}', '\x{ff}', list_to_atom([16#100]),
     list_to_atom([16#263a]), list_to_atom([16#1F600, $x]),
     list_to_atom(lists:duplicate(255, $x)), list_to_atom(lists:duplicate(255, 16#263a)),
     true, false, undefined, 'Elixir.MyApp.PubSub', 'a@h', 'b@h', 'nonode@nohost'].

ints() ->
    B = [0, 1, 255, 256, 1 bsl 27, 1 bsl 31 - 1, 1 bsl 31, 1 bsl 32, 1 bsl 53, 1 bsl 53 + 1,
         1 bsl 59, 1 bsl 60 - 1, 1 bsl 60, 1 bsl 63 - 1, 1 bsl 63, 1 bsl 64 - 1, 1 bsl 64,
         1 bsl 80, 1 bsl 80 + 1, 1 bsl 2040 - 1, 1 bsl 2040, 1 bsl 8000 + 12345],
    lists:usort(B ++ [X - 1 || X <- B] ++ [-X || X <- B] ++ [-X - 1 || X <- B]).

floats() ->
    [0.0, minus_zero(), 1.0, -1.0, 0.5, 255.0, 256.5, 1.0e300, -1.0e300, 5.0e-324,
     2.2250738585072014e-308, 9007199254740992.0, 9007199254740994.0,
     9.223372036854775807e18, -9.223372036854775807e18, 1.8446744073709552e19,
     float(1 bsl 80), -float(1 bsl 80), 1.7976931348623157e308].

pid(Node, Num, Ser, Cr) ->
    binary_to_term(<<131, 88, (atom_ext(Node))/binary, Num:32, Ser:32, Cr:32>>).
port(Node, Id, Cr) ->
    binary_to_term(<<131, 120, (atom_ext(Node))/binary, Id:64, Cr:32>>).
ref(Node, Cr, Ws) ->
    binary_to_term(<<131, 90, (length(Ws)):16, (atom_ext(Node))/binary, Cr:32,
                     (<< <<W:32>> || W <- Ws >>)/binary>>).
atom_ext(A) ->
    B = atom_to_binary(A, utf8),
    <<119, (byte_size(B)), B/binary>>.

%% Made once: OTP 25 may hash an external ref or pid built again later
%% (after its node entry was freed) apart from an identical earlier one, so
%% a map could hold both as keys that encode identically.
ids() ->
    case persistent_term:get({?MODULE, ids}, undefined) of
        undefined ->
            Ids = make_ids(),
            persistent_term:put({?MODULE, ids}, Ids),
            Ids;
        Ids -> Ids
    end.

make_ids() ->
    P = spawn(fun() -> ok end),
    Self = self(),
    Port = hd(erlang:ports()),
    [Self, P, Port, make_ref(), make_ref(), alias(),
     pid('a@h', 1, 0, 1), pid('a@h', 1, 1, 1), pid('b@h', 70000, 9000, 2), pid('a@h', 1, 0, 2),
     pid(node(), 5, 0, 0),
     port('a@h', 1, 1), port('a@h', 1 bsl 40, 1), port('b@h', 7, 3), port('a@h', 7, 4),
     ref('a@h', 1, [1]), ref('a@h', 1, [1, 2]), ref('a@h', 2, [1, 2, 3]),
     ref('b@h', 1, [5, 4, 3, 2, 1]), ref('a@h', 1, [0, 0, 0, 0, 7]), ref('a@h', 3, [1, 0, 0])].

funs() ->
    N = rand:uniform(100),
    [fun lists:map/2, fun erlang:abs/1, fun lists:sort/1, fun() -> ok end,
     fun(X) -> X + N end, fun(X) -> {X, N, <<"env">>} end].

edge_terms() ->
    atoms() ++ ints() ++ floats() ++ ids() ++ funs() ++
        [<<>>, <<0>>, <<"abc">>, <<1:1>>, <<5:3>>, <<255, 7:7>>, <<0:2040>>, rand:bytes(300),
         "", "a", "abc", lists:seq(0, 255), [256], [1 | 2], [a | <<"b">>], [[] | []],
         lists:duplicate(70000, $a), lists:seq(1, 300), [1.0, 1, -0.0],
         {}, {a}, list_to_tuple(lists:seq(1, 256)), list_to_tuple(lists:seq(1, 300)),
         #{}, #{a => 1}, #{1 => a, 1.0 => b}, #{0.0 => z},
         maps:from_list([{I, I} || I <- lists:seq(1, 32)]),
         maps:from_list([{I, I} || I <- lists:seq(1, 33)]),
         maps:from_list([{gen_leaf(), I} || I <- lists:seq(1, 60)]),
         #{#{a => 1} => [#{}], {1, 2} => "x"},
         deep(200, list), deep(200, tuple), deep(150, map),
         {minus_zero(), [minus_zero()]}, fun_with_env(minus_zero())].

fun_with_env(X) -> fun() -> X end.

deep(0, _) -> leaf;
deep(N, list) -> [deep(N - 1, list)];
deep(N, tuple) -> {deep(N - 1, tuple)};
deep(N, map) -> #{k => deep(N - 1, map)}.

pick(L) -> lists:nth(rand:uniform(length(L)), L).

gen_leaf() ->
    case rand:uniform(12) of
        1 -> pick(atoms());
        2 -> pick(ints());
        3 -> (rand:uniform(1 bsl rand:uniform(200)) - 1) * pick([1, -1]);
        4 -> rand:uniform(1000) - 500;
        5 -> pick(floats());
        6 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(100) - 50);
        7 -> rand:bytes(rand:uniform(20) - 1);
        8 -> <<(rand:bytes(rand:uniform(5) - 1))/binary, (rand:uniform(100)):(rand:uniform(7))>>;
        9 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(10))];
        10 -> pick(ids());
        11 -> pick(funs());
        12 -> pick([[], {}, #{}, "", <<>>])
    end.

gen(0) -> gen_leaf();
gen(D) ->
    case rand:uniform(12) of
        N when N =< 5 -> gen_leaf();
        6 -> [gen(D - 1) || _ <- lists:seq(1, rand:uniform(6) - 1)];
        7 -> improper(D);
        8 -> list_to_tuple([gen(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        9 -> maps:from_list([{gen(D - 1), gen(D - 1)} || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        10 -> maps:from_list([{gen_leaf(), gen_leaf()} || _ <- lists:seq(1, 30 + rand:uniform(10))]);
        11 -> [rand:uniform(300) - 1 || _ <- lists:seq(1, rand:uniform(8))];
        12 -> {gen(D - 1), [gen(D - 1) | gen(D - 1)]}
    end.

improper(D) ->
    Tail = gen_leaf(),
    case is_list(Tail) of
        true -> [gen(D - 1) | Tail];
        false -> [gen(D - 1), gen(D - 1) | Tail]
    end.

%% Elements for sorting: many types, many near-equal values.
sort_elem() ->
    case rand:uniform(8) of
        1 -> I = rand:uniform(20) - 10, pick([I, float(I), I + 0.5]);
        2 -> pick(ints() ++ floats());
        3 -> pick(atoms());
        4 -> pick(ids() ++ funs());
        5 -> {sort_elem(), pick([a, 1, 1.0])};
        6 -> [sort_elem() | pick([[], [1], 1, "x"])];
        7 -> pick([#{1 => a}, #{1.0 => a}, #{a => 1}, #{a => 1.0}, #{a => 2}, #{}]);
        8 -> gen(2)
    end.

%% Pairs of terms close to each other, so that order and equality are
%% decided deep inside them.
pairs(N) ->
    [pair() || _ <- lists:seq(1, N)].

pair() ->
    case rand:uniform(6) of
        1 -> {gen(3), gen(3)};
        2 -> {gen_leaf(), gen_leaf()};
        3 -> T = gen(3), {T, mutate(T)};
        4 -> T = gen(3), {T, floatify(T)};
        5 -> N = pick(ints()), {N, pick([float(N) || abs(N) < 1 bsl 1000] ++ [N + 1, -N])};
        6 -> {sort_elem(), sort_elem()}
    end.


%% Terms that are =:= but may be encoded differently, and near misses.
exact_pairs() ->
    [{0.0, minus_zero()}, {[minus_zero()], [0.0]}, {#{0.0 => a}, #{minus_zero() => a}},
     {ref('a@h', 1, [7, 0, 1]), ref('a@h', 1, [7])},
     {1, 1.0}, {[1], [1.0]}, {#{1 => a}, #{1.0 => a}}, {#{a => 1}, #{a => 1.0}},
     {"abc", [$a, $b, $c]}, {<<"a">>, "a"}, {<<1:1>>, <<128>>}].

mutate(T) when is_list(T), T =/= [] ->
    try lists:split(rand:uniform(length(T)) - 1, T) of
        {A, [X | B]} -> A ++ [mutate(X) | B]
    catch _:_ -> [gen_leaf() | T]
    end;
mutate(T) when is_tuple(T), tuple_size(T) > 0 ->
    I = rand:uniform(tuple_size(T)),
    setelement(I, T, mutate(element(I, T)));
mutate(T) when is_map(T), map_size(T) > 0 ->
    K = pick(maps:keys(T)),
    pick([T#{K => mutate(maps:get(K, T))}, maps:remove(K, T)]);
mutate(T) when is_integer(T), abs(T) < 1 bsl 1000 -> pick([T + 1, T - 1, float(T)]);
mutate(T) when is_integer(T) -> pick([T + 1, T - 1]);
mutate(T) when is_float(T), abs(T) < 1.0e300 -> pick([-T, T * 2, round(T)]);
mutate(T) when is_float(T) -> -T;
mutate(T) when is_binary(T) -> <<T/binary, 0>>;
mutate(_) -> gen_leaf().

floatify(T) when is_integer(T), abs(T) < 1 bsl 53 -> float(T);
floatify(T) when is_list(T) -> try [floatify(X) || X <- T] catch _:_ -> T end;
floatify(T) when is_tuple(T) -> list_to_tuple([floatify(X) || X <- tuple_to_list(T)]);
floatify(T) when is_map(T) -> maps:map(fun(_, V) -> floatify(V) end, T);
floatify(T) -> T.
