%% tab2file_SUITE: etsd reads what ets:tab2file/2,3 writes on BEAM, BEAM's
%% ets:file2tab(F, [{verify, true}]) reads what etsd writes, and damaged
%% files are refused with a clear error. etsd's side is driven through
%% test/tools/store_tab2file.c. Over rpc, a real etsd reads and writes such
%% files only inside its --file-dir.
-module(tab2file_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_testcase/2, end_per_testcase/2]).
-export([beam_file_loads_in_etsd/1,
         beam_file_with_extended_info_loads_in_etsd/1,
         etsd_file_loads_in_beam_with_verify/1,
         large_table_round_trips_both_ways/1,
         truncated_file_is_refused/1,
         corrupt_file_is_refused/1,
         non_set_table_is_refused/1,
         rpc_tab2file_writes_inside_file_dir_and_beam_reads_it/1,
         rpc_file2tab_reads_a_beam_file_inside_file_dir/1,
         rpc_file_calls_refuse_parent_dir_components/1,
         rpc_file_calls_refuse_absolute_paths_elsewhere/1,
         rpc_file_calls_refuse_symlinks_leading_outside/1,
         rpc_file_calls_without_data_dir_are_refused/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [beam_file_loads_in_etsd,
     beam_file_with_extended_info_loads_in_etsd,
     etsd_file_loads_in_beam_with_verify,
     large_table_round_trips_both_ways,
     truncated_file_is_refused,
     corrupt_file_is_refused,
     non_set_table_is_refused,
     rpc_tab2file_writes_inside_file_dir_and_beam_reads_it,
     rpc_file2tab_reads_a_beam_file_inside_file_dir,
     rpc_file_calls_refuse_parent_dir_components,
     rpc_file_calls_refuse_absolute_paths_elsewhere,
     rpc_file_calls_refuse_symlinks_leading_outside,
     rpc_file_calls_without_data_dir_are_refused].

init_per_testcase(Case, Config) ->
    Dir = filename:join(?config(priv_dir, Config),
                        atom_to_list(Case) ++ "_" ++
                            integer_to_list(erlang:unique_integer([positive]))),
    ok = filelib:ensure_path(Dir),
    [{work_dir, Dir} | Config].

end_per_testcase(_Case, Config) ->
    case ?config(etsd, Config) of
        undefined -> ok;
        E -> etsd_test_lib:stop_etsd(E)
    end,
    ok.

tool() -> etsd_test_lib:tool_path("store_tab2file").

file(Config, Name) -> filename:join(?config(work_dir, Config), Name).

%% Objects of many kinds: what a users table and its neighbours hold.
objects() ->
    Self = self(),
    Ref = make_ref(),
    [{1, <<"alice">>, 30},
     {1.0, float_key_differs_from_integer_key},
     {"a", string_key}, {<<"a">>, binary_key},
     {2, "bob", 1.5, [1, 2, 3]},
     {-5, 123456789012345678901234567890, -98765432109876543210},
     {{a, b}, #{x => 1, "y" => [2], <<"z">> => {3}}},
     {maps:from_list([{K, K * K} || K <- lists:seq(1, 40)]), big_map},
     {'hello world', 'ünïcødé', <<1:3>>},
     {Self, Ref, node()},
     {[], {}, <<>>, ""},
     {lists:seq(1, 300), binary:copy(<<"x">>, 1000)},
     {nested, {{{{deep}}}}, [[[[]]]]}].

new_table(Name, Objects) ->
    T = ets:new(Name, [set, public]),
    true = ets:insert(T, Objects),
    T.

%% Loads File in etsd; returns {ok, Name, Objects} or {error, Output}.
etsd_load(Config, File, Verify) ->
    Dump = file(Config, "dump.bin"),
    case etsd_test_lib:run(tool(), ["load", File, atom_to_list(Verify), Dump]) of
        {0, Out} ->
            {match, [Name]} = re:run(Out, "^ok ([^ ]+) ", [{capture, all_but_first, binary}]),
            {ok, Bin} = file:read_file(Dump),
            {ok, Name, binary_to_term(Bin)};
        {1, Out} ->
            {error, Out}
    end.

%% Writes Objects from etsd as table Name to File.
etsd_write(Config, Name, Keypos, Objects, Flags, File) ->
    In = file(Config, "in.bin"),
    ok = file:write_file(In, term_to_binary(Objects)),
    {0, _} = etsd_test_lib:run(tool(), ["write", In, File, atom_to_list(Name),
                                        integer_to_list(Keypos), Flags]),
    ok.

beam_file_loads_in_etsd(Config) ->
    Objs = objects(),
    T = new_table(users, Objs),
    F = file(Config, "plain.tab"),
    ok = ets:tab2file(T, F),
    {ok, <<"users">>, Got} = etsd_load(Config, F, verify),
    true = lists:sort(Got) =:= lists:sort(ets:tab2list(T)),
    {ok, <<"users">>, Got2} = etsd_load(Config, F, noverify),
    true = lists:sort(Got2) =:= lists:sort(Objs).

beam_file_with_extended_info_loads_in_etsd(Config) ->
    Objs = objects(),
    T = new_table(users, Objs),
    [begin
         F = file(Config, "ext.tab"),
         ok = ets:tab2file(T, F, [{extended_info, Ext}]),
         {ok, <<"users">>, Got} = etsd_load(Config, F, verify),
         true = lists:sort(Got) =:= lists:sort(Objs)
     end || Ext <- [[object_count], [md5sum], [object_count, md5sum], []]].

etsd_file_loads_in_beam_with_verify(Config) ->
    Objs = objects(),
    [begin
         F = file(Config, "etsd_" ++ Flags ++ ".tab"),
         ok = etsd_write(Config, exported_users, 1, Objs, Flags, F),
         {ok, T} = ets:file2tab(F, [{verify, true}]),
         exported_users = ets:info(T, name),
         set = ets:info(T, type),
         1 = ets:info(T, keypos),
         true = lists:sort(ets:tab2list(T)) =:= lists:sort(Objs),
         {ok, Info} = ets:tabfile_info(F),
         {size, Size} = lists:keyfind(size, 1, Info),
         Size = length(Objs),
         ets:delete(T)
     end || Flags <- ["none", "count", "md5", "both"]].

large_table_round_trips_both_ways(Config) ->
    Objs = [{N, <<"user", (integer_to_binary(N))/binary>>, N * 1.5,
             binary:copy(<<N:8>>, N rem 100)} || N <- lists:seq(1, 20000)]
        ++ [{big, binary:copy(<<"z">>, 100000)}],
    T = new_table(big_users, Objs),
    F = file(Config, "big.tab"),
    ok = ets:tab2file(T, F, [{extended_info, [object_count, md5sum]}]),
    {ok, <<"big_users">>, Got} = etsd_load(Config, F, verify),
    true = lists:sort(Got) =:= lists:sort(Objs),
    F2 = file(Config, "big_back.tab"),
    ok = etsd_write(Config, big_users, 1, Got, "both", F2),
    ets:delete(T),
    {ok, T2} = ets:file2tab(F2, [{verify, true}]),
    true = lists:sort(ets:tab2list(T2)) =:= lists:sort(Objs).

truncated_file_is_refused(Config) ->
    T = new_table(users, objects()),
    F = file(Config, "full.tab"),
    ok = ets:tab2file(T, F, [{extended_info, [object_count, md5sum]}]),
    {ok, Bin} = file:read_file(F),
    Cut = file(Config, "cut.tab"),
    Sizes = [4, 8, 20, byte_size(Bin) div 2, byte_size(Bin) - 50, byte_size(Bin) - 1],
    [begin
         ok = file:write_file(Cut, binary:part(Bin, 0, N)),
         {error, Out} = etsd_load(Config, Cut, verify),
         ct:log("cut at ~p: ~s", [N, Out]),
         {match, _} = re:run(Out, "^error: .*cut.tab: (truncated|not a disk_log)")
     end || N <- Sizes],
    %% Cut inside an item: refused even without verify.
    ok = file:write_file(Cut, binary:part(Bin, 0, byte_size(Bin) - 1)),
    {error, Out2} = etsd_load(Config, Cut, noverify),
    {match, _} = re:run(Out2, "truncated").

corrupt_file_is_refused(Config) ->
    T = new_table(users, objects()),
    F = file(Config, "full.tab"),
    ok = ets:tab2file(T, F, [{extended_info, [md5sum]}]),
    {ok, Bin} = file:read_file(F),
    Bad = file(Config, "bad.tab"),
    %% A flipped bit in an object's bytes: the term may still decode, but
    %% the md5sum the file declares no longer matches.
    Pos = byte_size(Bin) - 200,
    <<A:Pos/binary, B, C/binary>> = Bin,
    ok = file:write_file(Bad, <<A/binary, (B bxor 1), C/binary>>),
    {error, Out} = etsd_load(Config, Bad, verify),
    ct:log("~s", [Out]),
    {match, _} = re:run(Out, "^error: .*bad.tab: (checksum error|corrupt)"),
    %% And BEAM agrees the file is bad.
    {error, _} = ets:file2tab(Bad, [{verify, true}]),
    %% Not a disk_log at all.
    ok = file:write_file(Bad, <<"just some text, not a table file">>),
    {error, Out2} = etsd_load(Config, Bad, noverify),
    {match, _} = re:run(Out2, "not a disk_log file").

non_set_table_is_refused(Config) ->
    T = ets:new(b, [bag, public]),
    true = ets:insert(T, [{1, a}, {1, b}]),
    F = file(Config, "bag.tab"),
    ok = ets:tab2file(T, F),
    {error, Out} = etsd_load(Config, F, verify),
    {match, _} = re:run(Out, "type bag is not supported").

%% ---- over rpc: confined to --file-dir ----------------------------------------

%% A real etsd with a data directory (so DATA_DIR/files), a users table of
%% a few objects; returns {Node, FileDir}.
etsd_with_files(Config) ->
    Data = file(Config, "data"),
    E = etsd_test_lib:start_etsd(#{config => Config, name => "t2f",
                                   args => ["--data-dir", Data]}),
    put(etsd, E),
    N = maps:get(node, E),
    true = rpc:call(N, ets, insert, [users, [{<<"a">>, 1}, {<<"b">>, 2}, {3, "c"}]]),
    {N, filename:join(Data, "files")}.

stop_etsd() ->
    0 = etsd_test_lib:stop_etsd(erase(etsd)).

rpc_tab2file_writes_inside_file_dir_and_beam_reads_it(Config) ->
    {N, Files} = etsd_with_files(Config),
    %% A relative name is taken inside the folder, an absolute one may
    %% point into it; a string, a binary and an atom are all file names.
    ok = rpc:call(N, ets, tab2file, [users, "rel.ets"]),
    ok = rpc:call(N, ets, tab2file, [users, <<"bin.ets">>,
                                     [{extended_info, [object_count, md5sum]}]]),
    ok = rpc:call(N, ets, tab2file, [users, 'atom.ets']),
    Abs = filename:join(Files, "abs.ets"),
    ok = rpc:call(N, ets, tab2file, [users, Abs]),
    ok = file:make_dir(filename:join(Files, "sub")),
    ok = rpc:call(N, ets, tab2file, [users, "sub/nested.ets"]),
    [begin
         {ok, T} = ets:file2tab(filename:join(Files, F), [{verify, true}]),
         [{3, "c"}, {<<"a">>, 1}, {<<"b">>, 2}] = lists:sort(ets:tab2list(T)),
         ets:delete(T)
     end || F <- ["rel.ets", "bin.ets", "atom.ets", "abs.ets", "sub/nested.ets"]],
    stop_etsd().

rpc_file2tab_reads_a_beam_file_inside_file_dir(Config) ->
    {N, Files} = etsd_with_files(Config),
    T = new_table(seeded, [{k, I} || I <- [1]] ++ [{I, I * I} || I <- lists:seq(1, 100)]),
    ok = ets:tab2file(T, filename:join(Files, "seed.ets"), [{extended_info, [md5sum]}]),
    {ok, seeded} = rpc:call(N, ets, file2tab, ["seed.ets", [{verify, true}]]),
    101 = rpc:call(N, ets, info, [seeded, size]),
    %% A missing file inside the folder is ETS's own error, not a refusal.
    {error, _} = rpc:call(N, ets, file2tab, ["missing.ets"]),
    stop_etsd().

rpc_file_calls_refuse_parent_dir_components(Config) ->
    {N, Files} = etsd_with_files(Config),
    Out = filename:join(filename:dirname(Files), "escaped.ets"),
    [begin
         {error, {parent_dir_in_path, Name}} = rpc:call(N, ets, tab2file, [users, Name]),
         {error, {parent_dir_in_path, Name}} = rpc:call(N, ets, file2tab, [Name])
     end || Name <- ["../escaped.ets", "sub/../../escaped.ets", <<"..">>,
                     filename:join(Files, "../escaped.ets")]],
    false = filelib:is_file(Out),
    %% A name that merely contains two dots is fine.
    ok = rpc:call(N, ets, tab2file, [users, "a..b.ets"]),
    stop_etsd().

rpc_file_calls_refuse_absolute_paths_elsewhere(Config) ->
    {N, Files} = etsd_with_files(Config),
    Elsewhere = file(Config, "elsewhere.ets"),
    {error, {outside_file_dir, Elsewhere}} = rpc:call(N, ets, tab2file, [users, Elsewhere]),
    false = filelib:is_file(Elsewhere),
    {error, {outside_file_dir, "/etc/passwd"}} = rpc:call(N, ets, file2tab, ["/etc/passwd"]),
    %% A sibling whose name starts like the folder's is elsewhere too.
    Sibling = Files ++ "_x/t.ets",
    {error, {outside_file_dir, Sibling}} = rpc:call(N, ets, tab2file, [users, Sibling]),
    stop_etsd().

rpc_file_calls_refuse_symlinks_leading_outside(Config) ->
    {N, Files} = etsd_with_files(Config),
    Outside = file(Config, "outside"),
    ok = file:make_dir(Outside),
    T = new_table(secret, [{s, 1}]),
    ok = ets:tab2file(T, filename:join(Outside, "secret.ets")),
    ok = file:make_symlink(Outside, filename:join(Files, "out_dir")),
    ok = file:make_symlink(filename:join(Outside, "secret.ets"),
                           filename:join(Files, "secret_link.ets")),
    ok = file:make_symlink(filename:join(Outside, "nothing_yet.ets"),
                           filename:join(Files, "dangling.ets")),
    {error, {symlink_outside_file_dir, "out_dir/x.ets"}} =
        rpc:call(N, ets, tab2file, [users, "out_dir/x.ets"]),
    {error, {symlink_outside_file_dir, "secret_link.ets"}} =
        rpc:call(N, ets, file2tab, ["secret_link.ets"]),
    {error, {symlink_outside_file_dir, "dangling.ets"}} =
        rpc:call(N, ets, tab2file, [users, "dangling.ets"]),
    %% tab2file writes NAME.tmp first: a link there is checked as well.
    ok = file:make_symlink(filename:join(Outside, "tmp_target"),
                           filename:join(Files, "viatmp.ets.tmp")),
    {error, {symlink_outside_file_dir, "viatmp.ets"}} =
        rpc:call(N, ets, tab2file, [users, "viatmp.ets"]),
    [] = [F || F <- filelib:wildcard("*", Outside), F =/= "secret.ets"],
    undefined = rpc:call(N, ets, info, [secret, size]),
    %% A link that stays inside the folder is followed.
    ok = file:make_dir(filename:join(Files, "real")),
    ok = file:make_symlink(filename:join(Files, "real"), filename:join(Files, "alias")),
    ok = rpc:call(N, ets, tab2file, [users, "alias/u.ets"]),
    true = filelib:is_regular(filename:join([Files, "real", "u.ets"])),
    stop_etsd().

rpc_file_calls_without_data_dir_are_refused(Config) ->
    E = etsd_test_lib:start_etsd(#{config => Config, name => "t2f_mem"}),
    put(etsd, E),
    N = maps:get(node, E),
    F = file(Config, "nowhere.ets"),
    {error, no_file_dir} = rpc:call(N, ets, tab2file, [users, F]),
    {error, no_file_dir} = rpc:call(N, ets, file2tab, [F]),
    false = filelib:is_file(F),
    %% Arguments that are no file name stay ETS's badarg.
    {badrpc, {'EXIT', {badarg, _}}} = rpc:call(N, ets, tab2file, [users, {not_a_name}]),
    stop_etsd().
