%% cli_SUITE: the etsd command line as a user meets it: every bad value is
%% refused before etsd registers with EPMD, with a message that names the
%% flag, the value and what was expected, and a non-zero exit.
-module(cli_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0]).
-export([help_prints_usage_and_exits_0/1,
         bad_numbers_name_flag_value_and_range/1,
         fsync_names_its_accepted_values/1,
         bad_words_and_shapes_are_refused_with_the_flag/1,
         data_dir_that_cannot_be_created_fails_before_epmd/1,
         file_dir_that_cannot_be_created_fails_before_epmd/1,
         metrics_port_in_use_fails_before_epmd/1,
         join_node_missing_from_epmd_is_logged_as_not_registered/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [help_prints_usage_and_exits_0,
     bad_numbers_name_flag_value_and_range,
     fsync_names_its_accepted_values,
     bad_words_and_shapes_are_refused_with_the_flag,
     data_dir_that_cannot_be_created_fails_before_epmd,
     file_dir_that_cannot_be_created_fails_before_epmd,
     metrics_port_in_use_fails_before_epmd,
     join_node_missing_from_epmd_is_logged_as_not_registered].

help_prints_usage_and_exits_0(_Config) ->
    {0, Out} = etsd_test_lib:run(etsd_test_lib:etsd_path(), ["--help"]),
    match = re:run(Out, "--name NAME@HOST", [{capture, none}]),
    match = re:run(Out, "--data-dir DIR", [{capture, none}]),
    match = re:run(Out, "--metrics-port", [{capture, none}]),
    match = re:run(Out, "--file-dir DIR", [{capture, none}]).

%% Runs etsd under a fresh name with Args; it must exit non-zero before
%% EPMD ever lists it, and print every regular expression in Want.
refused(Args, Want) ->
    Name = etsd_test_lib:unique_name("cli"),
    {Status, Out} = etsd_test_lib:run(etsd_test_lib:etsd_path(),
                                      ["--name", Name ++ "@127.0.0.1", "--cookie", "c"
                                       | Args]),
    ct:log("~p -> ~p~n~s", [Args, Status, Out]),
    true = Status =/= 0,
    [case re:run(Out, W, [{capture, none}]) of
         match -> ok;
         nomatch -> ct:fail({missing, W, Args, Out})
     end || W <- Want],
    %% Nothing was announced: no EPMD registration, no "node up" line.
    nomatch = re:run(Out, "registered|up: port", [{capture, none}]),
    {ok, Names} = net_adm:names("127.0.0.1"),
    false = lists:keymember(Name, 1, Names),
    Out.

bad_numbers_name_flag_value_and_range(_Config) ->
    Rows = [{"--port", "99999", "0 to 65535"},
            {"--port", "-1", "0 to 65535"},
            {"--keypos", "0", "1 to 16777216"},
            {"--pool-size", "many", "1 to 1024"},
            {"--net-ticktime", "0", "1 to 3600"},
            {"--sync-delay-ms", "1.5", "0 to 86400000"},
            {"--max-frame", "12", "1024 to 4294967295"},
            {"--max-queue", "+5000", "1024 to"}],
    [refused([Flag, Val], [re_quote(Flag ++ " '" ++ Val ++ "'"), "want a whole number",
                           Range])
     || {Flag, Val, Range} <- Rows],
    ok.

fsync_names_its_accepted_values(_Config) ->
    [refused(["--fsync", V], ["--fsync '" ++ re_quote(V) ++ "'", "always", "never",
                              "milliseconds"])
     || V <- ["sometimes", "0", "10ms", "99999999"]],
    ok.

bad_words_and_shapes_are_refused_with_the_flag(_Config) ->
    refused(["--log-level", "loud"], ["--log-level 'loud'", "error, warn, info or debug"]),
    refused(["--metrics-port", "nine"], ["--metrics-port 'nine'", "port from 0 to 65535"]),
    refused(["--metrics-port", "300.1.1.1:80"], ["--metrics-port '300.1.1.1:80'"]),
    refused(["--join", "nohost"], ["--join", "'nohost' is not a node name"]),
    refused(["--fsnyc", "always"], ["unknown option '--fsnyc'"]),
    refused(["--data-dir"], ["option --data-dir needs a value"]),
    refused(["--dns", "x.example"], ["--dns and --basename go together"]),
    ok.

data_dir_that_cannot_be_created_fails_before_epmd(Config) ->
    %% A path under a regular file cannot be created, even by root.
    File = filename:join(?config(priv_dir, Config), "plain_file"),
    ok = file:write_file(File, <<"x">>),
    Dir = filename:join(File, "data"),
    refused(["--data-dir", Dir], ["--data-dir '" ++ re_quote(Dir) ++ "'",
                                  "(?i)not a directory", "want a folder"]).

file_dir_that_cannot_be_created_fails_before_epmd(Config) ->
    Priv = ?config(priv_dir, Config),
    File = filename:join(Priv, "plain_file2"),
    ok = file:write_file(File, <<"x">>),
    Dir = filename:join(File, "files"),
    refused(["--file-dir", Dir], ["--file-dir", re_quote(Dir), "(?i)not a directory"]),
    %% The default, DATA_DIR/files, is checked as well.
    DataDir = filename:join(Priv, "dd_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = filelib:ensure_path(DataDir),
    ok = file:write_file(filename:join(DataDir, "files"), <<"not a folder">>),
    refused(["--data-dir", DataDir], ["--data-dir", "files", "not usable|cannot create"]).

metrics_port_in_use_fails_before_epmd(_Config) ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    P = integer_to_list(Port),
    refused(["--metrics-port", P], ["--metrics-port", "(?i)address already in use"]),
    refused(["--metrics-port", "127.0.0.1:" ++ P], ["--metrics-port", "(?i)in use"]),
    gen_tcp:close(L).

%% A --join node that is not up yet is not an error (it may come later),
%% but the log says what is wrong: EPMD does not know it.
join_node_missing_from_epmd_is_logged_as_not_registered(Config) ->
    Missing = etsd_test_lib:unique_name("absent"),
    E = etsd_test_lib:start_etsd(#{config => Config, name => "cli_join",
                                   args => ["--join", Missing ++ "@127.0.0.1"]}),
    etsd_test_lib:await_log(E, "no node named " ++ Missing ++
                                " is registered with EPMD on 127.0.0.1", 10000),
    false = etsd_test_lib:log_has(E, "unreachable"),
    0 = etsd_test_lib:stop_etsd(E).

re_quote(S) ->
    re:replace(S, "[][\\\\^$.|?*+(){}]", "\\\\&", [global, {return, list}]).
