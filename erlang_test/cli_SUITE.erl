%% cli_SUITE: the etsd command line as a user meets it.
-module(cli_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, help_prints_usage_and_exits_0/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() -> [help_prints_usage_and_exits_0].

help_prints_usage_and_exits_0(_Config) ->
    {0, Out} = etsd_test_lib:run(etsd_test_lib:etsd_path(), ["--help"]),
    match = re:run(Out, "--name NAME@HOST", [{capture, none}]),
    match = re:run(Out, "--data-dir DIR", [{capture, none}]).
