%% ipv6_SUITE: etsd in a cluster of BEAM nodes on -proto_dist inet6_tcp
%% named x@::1: EPMD over IPv6, a dual-stack listener, the whole
%% replication flow and rpc, and erl's rules for names.
-module(ipv6_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([existing_data_reaches_etsd_on_join/1,
         new_users_flow_both_ways/1,
         later_node_gets_data_only_etsd_holds/1,
         redeployed_cluster_is_reseeded_by_etsd/1,
         rpc_call_erpc_call_and_multicalls_work/1,
         beam_node_pings_etsd_and_sees_it_hidden/1,
         listener_takes_ipv4_and_ipv6/1,
         dns_aaaa_records_become_nodes/1,
         names_follow_erl_rules_for_the_carrier/1]).

suite() -> [{timetrap, {seconds, 90}}].

all() ->
    [beam_node_pings_etsd_and_sees_it_hidden,
     existing_data_reaches_etsd_on_join,
     new_users_flow_both_ways,
     later_node_gets_data_only_etsd_holds,
     redeployed_cluster_is_reseeded_by_etsd,
     rpc_call_erpc_call_and_multicalls_work,
     listener_takes_ipv4_and_ipv6,
     dns_aaaa_records_become_nodes,
     names_follow_erl_rules_for_the_carrier].

%% ::1 is on the loopback of any Linux with IPv6; without it there is no
%% IPv6 carrier to test, and the suite says so.
init_per_suite(Config) ->
    case gen_tcp:listen(0, [inet6, {ip, {0,0,0,0,0,0,0,1}}]) of
        {ok, L} ->
            gen_tcp:close(L),
            [{carrier, #{tag => "v6", host => "::1",
                         beam_args => ["-proto_dist", "inet6_tcp"],
                         etsd_args => ["--proto-dist", "inet6_tcp"]}} | Config];
        {error, Why} ->
            {skip, {no_ipv6_loopback, Why}}
    end.

end_per_suite(Config) -> Config.

init_per_testcase(_, Config) -> Config.

end_per_testcase(_, Config) ->
    carrier_test_lib:stop_all(),
    Config.

existing_data_reaches_etsd_on_join(Config) ->
    carrier_test_lib:pull_on_join(Config).

new_users_flow_both_ways(Config) ->
    carrier_test_lib:new_both_ways(Config).

later_node_gets_data_only_etsd_holds(Config) ->
    carrier_test_lib:late_node_gets_etsd_data(Config).

redeployed_cluster_is_reseeded_by_etsd(Config) ->
    carrier_test_lib:redeploy_is_reseeded(Config).

rpc_call_erpc_call_and_multicalls_work(Config) ->
    carrier_test_lib:rpc_flavours(Config).

%% The failure the issue reported: a BEAM node's ping got pang.
beam_node_pings_etsd_and_sees_it_hidden(Config) ->
    A = carrier_test_lib:start_peer(?config(carrier, Config),
                                    seed_test_lib:unique("v6ping")),
    E = carrier_test_lib:etsd(Config, A, []),
    EN = carrier_test_lib:enode(E),
    "::1" = lists:last(string:split(atom_to_list(EN), "@")),
    pong = carrier_test_lib:on(A, net_adm, ping, [EN]),
    [EN] = carrier_test_lib:on(A, erlang, nodes, [hidden]),
    %% etsd registered with EPMD over IPv6 and looked A up the same way.
    etsd_test_lib:await_log(E, "nodeup", 10000),
    false = etsd_test_lib:log_has(E, "address family not supported"),
    ok.

%% inet6: the listener is dual-stack, as erl's is on "::".
listener_takes_ipv4_and_ipv6(Config) ->
    A = carrier_test_lib:start_peer(?config(carrier, Config),
                                    seed_test_lib:unique("v6ds")),
    E = carrier_test_lib:etsd(Config, A, []),
    Port = etsd_test_lib:etsd_port(E),
    {ok, S4} = gen_tcp:connect({127,0,0,1}, Port, [inet]),
    {ok, S6} = gen_tcp:connect({0,0,0,0,0,0,0,1}, Port, [inet6]),
    gen_tcp:close(S4),
    gen_tcp:close(S6),
    pong = carrier_test_lib:on(A, net_adm, ping, [carrier_test_lib:enode(E)]),
    ok.

%% inet_tcp_dist:splitnode/3: a long name's host needs a dot or an IP of
%% the carrier's family. A BEAM node refuses to connect to such a name
%% ("Hostname localhost is illegal"), and so does etsd. erl still starts
%% under such a name, where no node can ever reach it; etsd refuses to.
names_follow_erl_rules_for_the_carrier(Config) ->
    [begin
         {Status, Out} = etsd_test_lib:run(etsd_test_lib:etsd_path(),
                                           ["--name", Name, "--proto-dist", Proto,
                                            "--cookie", "c"]),
         ct:pal("--name ~s over ~s: exit ~p: ~s", [Name, Proto, Status, Out]),
         true = Status =/= 0,
         match = re:run(Out, "bad node name", [{capture, none}])
     end || {Name, Proto} <- [{"x@localhost", "inet6_tcp"}, {"x@::1", "inet_tcp"},
                              {"x@localhost", "inet_tcp"}]],
    A = carrier_test_lib:start_peer(?config(carrier, Config),
                                    seed_test_lib:unique("v6names")),
    Illegal = list_to_atom(seed_test_lib:unique("y") ++ "@localhost"),
    false = carrier_test_lib:on(A, net_kernel, connect_node, [Illegal]),
    E = carrier_test_lib:etsd(Config, A, ["--join", atom_to_list(Illegal)]),
    etsd_test_lib:await_log(E, "illegal host name", 10000),
    pong = carrier_test_lib:on(A, net_adm, ping, [carrier_test_lib:enode(E)]),
    ok.

%% --dns over inet6 takes the name's AAAA records: here a name that only
%% etsd's own /etc/hosts maps to ::1 (bubblewrap binds it in a private
%% mount namespace; nothing is mounted on the host).
dns_aaaa_records_become_nodes(Config) ->
    Hosts = filename:join(?config(priv_dir, Config), "hosts"),
    ok = file:write_file(Hosts, "127.0.0.1 localhost\n::1 etsd-v6.test\n"),
    Wrap = case os:find_executable("bwrap") of
               false -> false;
               Bwrap -> [Bwrap, "--dev-bind", "/", "/", "--ro-bind", Hosts, "/etc/hosts",
                         "--die-with-parent", "--"]
           end,
    Probe = case Wrap of
                false -> "bwrap is not installed";
                _ -> os:cmd(string:join(Wrap ++ ["getent", "ahostsv6", "etsd-v6.test"], " "))
            end,
    case string:find(Probe, "::1") of
        nomatch -> {skip, "cannot give etsd a private /etc/hosts here: " ++ Probe};
        _ -> dns_aaaa(Config, Wrap)
    end.

dns_aaaa(Config, Wrap) ->
    Base = seed_test_lib:unique("v6dns"),
    C = ?config(carrier, Config),
    A = carrier_test_lib:start_peer(C, Base),
    E = etsd_test_lib:start_etsd(
          #{config => Config, name => "etsd_v6dns", host => "::1",
            args => ["--dns", "etsd-v6.test", "--basename", Base | maps:get(etsd_args, C)],
            wait => epmd, wrap => Wrap}),
    try
        EN = carrier_test_lib:enode(E),
        etsd_test_lib:await(fun() ->
            lists:member(EN, carrier_test_lib:on(A, erlang, nodes, [hidden]))
        end, 15000, dns_node),
        etsd_test_lib:await_log(E, "dns etsd-v6.test: " ++ Base ++ "@::1", 5000)
    after
        etsd_test_lib:stop_etsd(E)
    end,
    ok.
