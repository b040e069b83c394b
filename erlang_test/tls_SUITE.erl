%% tls_SUITE: etsd in a cluster of BEAM nodes on -proto_dist inet_tls with
%% mutual certificates: the whole replication flow and rpc inside TLS, TLS
%% 1.2 and 1.3, OTP's host name check, and the refusals (unknown CA,
%% expired certificate, no client certificate, plaintext peer, hostile
%% bytes), each with one log line while other peers are served.
%% The certificates are made here, in priv_dir, with the openssl command.
-module(tls_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([existing_data_reaches_etsd_on_join/1,
         new_users_flow_both_ways/1,
         later_node_gets_data_only_etsd_holds/1,
         redeployed_cluster_is_reseeded_by_etsd/1,
         rpc_call_erpc_call_and_multicalls_work/1,
         tls_1_2_and_tls_1_3_both_work/1,
         server_certificate_must_name_the_host_as_otp_checks_it/1,
         certificate_from_an_unknown_ca_is_refused/1,
         expired_certificate_is_refused/1,
         missing_client_certificate_is_refused/1,
         plaintext_peer_is_refused/1,
         hostile_bytes_cost_only_their_connection/1,
         unsupported_optfile_option_stops_etsd_naming_it/1,
         inet6_tls_runs_the_same_over_ipv6/1,
         etsd_refused_by_the_cluster_logs_why/1]).

suite() -> [{timetrap, {seconds, 90}}].

all() ->
    [existing_data_reaches_etsd_on_join,
     new_users_flow_both_ways,
     later_node_gets_data_only_etsd_holds,
     redeployed_cluster_is_reseeded_by_etsd,
     rpc_call_erpc_call_and_multicalls_work,
     tls_1_2_and_tls_1_3_both_work,
     server_certificate_must_name_the_host_as_otp_checks_it,
     certificate_from_an_unknown_ca_is_refused,
     expired_certificate_is_refused,
     missing_client_certificate_is_refused,
     plaintext_peer_is_refused,
     hostile_bytes_cost_only_their_connection,
     unsupported_optfile_option_stops_etsd_naming_it,
     inet6_tls_runs_the_same_over_ipv6,
     etsd_refused_by_the_cluster_logs_why].

%% ---- Certificates and optfiles -----------------------------------------

init_per_suite(Config) ->
    case os:find_executable("openssl") of
        false -> {skip, "the openssl command is not installed"};
        _ -> make_pki(Config)
    end.

end_per_suite(Config) -> Config.

sh(Cmd) ->
    Out = os:cmd(Cmd ++ " 2>&1; echo \"exit=$?\""),
    case re:run(Out, "exit=0\n?$", [{capture, none}]) of
        match -> ok;
        nomatch -> ct:fail({command_failed, Cmd, Out})
    end.

%% A P-256 key and a certificate for it. Ca is none (self-signed CA) or
%% the name of the CA that signs it; San the subjectAltName text.
cert(Dir, Name, none, _San, _Days) ->
    P = filename:join(Dir, Name),
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
       " -keyout " ++ P ++ ".key -out " ++ P ++ ".pem -days 30 -subj /CN=" ++ Name);
cert(Dir, Name, Ca, San, Days) ->
    P = filename:join(Dir, Name),
    C = filename:join(Dir, Ca),
    Ext = P ++ ".ext",
    ok = file:write_file(Ext, "subjectAltName=" ++ San ++ "\n"),
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
       " -keyout " ++ P ++ ".key -out " ++ P ++ ".csr -subj /CN=" ++ Name),
    Sign = "openssl x509 -req -in " ++ P ++ ".csr -CA " ++ C ++ ".pem -CAkey " ++ C ++
        ".key -CAcreateserial -out " ++ P ++ ".pem -extfile " ++ Ext,
    case Days > 0 of
        true -> sh(Sign ++ " -days " ++ integer_to_list(Days));
        %% Expired: OpenSSL 3.4 and later take explicit dates and refuse a
        %% negative -days, which 3.0 (Debian 12) takes and lacks the dates.
        false -> sh(Sign ++ " -not_before 20200101000000Z -not_after 20200201000000Z"
                    " || " ++ Sign ++ " -days -1")
    end.

make_pki(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "pki"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    cert(Dir, "ca", none, "", 30),
    cert(Dir, "rogue_ca", none, "", 30),
    %% Both entries: OTP 25 checks x@127.0.0.1 against DNS:127.0.0.1, OTP 27
    %% and 29 against IP:127.0.0.1.
    cert(Dir, "node", "ca", "DNS:127.0.0.1,IP:127.0.0.1", 30),
    cert(Dir, "ipsan", "ca", "IP:127.0.0.1", 30),
    cert(Dir, "dnssan", "ca", "DNS:127.0.0.1", 30),
    cert(Dir, "node6", "ca", "DNS:::1,IP:::1", 30),
    cert(Dir, "expired", "ca", "DNS:127.0.0.1", -1),
    cert(Dir, "rogue", "rogue_ca", "DNS:127.0.0.1", 30),
    F = fun(N) -> filename:join(Dir, N) end,
    Side = fun(Cert, Extra) ->
                   [{certfile, F(Cert ++ ".pem")}, {keyfile, F(Cert ++ ".key")},
                    {cacertfile, F("ca.pem")}, {verify, verify_peer} | Extra]
           end,
    Opt = fun(Name, Server, Client) ->
                  File = F(Name ++ ".conf"),
                  ok = file:write_file(File, io_lib:format("~p.~n", [[{server, Server},
                                                                       {client, Client}]])),
                  {list_to_atom(Name), File}
          end,
    SrvX = [{fail_if_no_peer_cert, true}],
    Files =
        [Opt("good", Side("node", SrvX), Side("node", [])),
         Opt("v12", Side("node", [{versions, ['tlsv1.2']} | SrvX]),
             Side("node", [{versions, ['tlsv1.2']}])),
         Opt("v13", Side("node", [{versions, ['tlsv1.3']} | SrvX]),
             Side("node", [{versions, ['tlsv1.3']}])),
         Opt("good6", Side("node6", SrvX), Side("node6", [])),
         Opt("ipsan_server", Side("ipsan", SrvX), Side("node", [])),
         Opt("dnssan_server", Side("dnssan", SrvX), Side("node", [])),
         Opt("rogue", Side("rogue", SrvX), Side("rogue", [])),
         Opt("expired", Side("expired", SrvX), Side("expired", [])),
         Opt("nocert", Side("node", SrvX),
             [{cacertfile, F("ca.pem")}, {verify, verify_peer}]),
         Opt("ciphers", Side("node", SrvX),
             Side("node", [{ciphers, ["ECDHE-ECDSA-AES128-GCM-SHA256"]}]))],
    [{pki, maps:from_list(Files)},
     {carrier, carrier(maps:get(good, maps:from_list(Files)))} | Config].

carrier(OptFile) -> carrier("inet_tls", "127.0.0.1", OptFile).

carrier(Proto, Host, OptFile) ->
    #{tag => "tls", host => Host,
      beam_args => ["-proto_dist", Proto, "-ssl_dist_optfile", OptFile],
      etsd_args => ["--proto-dist", Proto, "--ssl-dist-optfile", OptFile,
                    "--tls-hostname-check", host_rule(), "--log-level", "debug"]}.

%% The release of the peers (this node's): its ssl client's host name rule.
host_rule() ->
    case list_to_integer(erlang:system_info(otp_release)) >= 27 of
        true -> "otp27";
        false -> "otp25"
    end.

optfile(Config, Name) -> maps:get(Name, ?config(pki, Config)).

%% Config whose carrier uses optfile Name (for etsd and peers alike).
with(Config, Name) ->
    lists:keystore(carrier, 1, Config, {carrier, carrier(optfile(Config, Name))}).

init_per_testcase(_, Config) -> Config.

end_per_testcase(_, Config) ->
    carrier_test_lib:stop_all(),
    Config.

%% ---- The replication flow and rpc inside TLS --------------------------------

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

tls_1_2_and_tls_1_3_both_work(Config) ->
    [begin
         C = with(Config, Conf),
         A = carrier_test_lib:start_peer(?config(carrier, C), seed_test_lib:unique("tv")),
         E = carrier_test_lib:etsd(C, A, []),
         EN = carrier_test_lib:enode(E),
         pong = carrier_test_lib:on(A, net_adm, ping, [EN]),
         EN = carrier_test_lib:call_etsd(A, E, erlang, node, []),
         etsd_test_lib:await_log(E, Version ++ " established", 10000),
         carrier_test_lib:stop_all()
     end || {Conf, Version} <- [{v12, "TLSv1.2"}, {v13, "TLSv1.3"}]],
    ok.

%% OTP's client checks the server certificate against the host of the node
%% name, and the rule changed: OTP 25 takes "127.0.0.1" as a DNS name (so
%% DNS:127.0.0.1 passes and IP:127.0.0.1 alone fails), OTP 27 and 29 as an
%% IP address (the other way round). For each certificate, a BEAM client
%% of this release decides; etsd, told the release, must decide the same.
server_certificate_must_name_the_host_as_otp_checks_it(Config) ->
    C = ?config(carrier, Config),
    Good = carrier_test_lib:start_peer(C, seed_test_lib:unique("tgood")),
    Seen = [begin
                S = carrier_test_lib:start_peer(?config(carrier, with(Config, Conf)),
                                                seed_test_lib:unique("tsan")),
                SN = atom_to_list(element(2, S)),
                Beam = carrier_test_lib:on(Good, net_kernel, connect_node, [element(2, S)]),
                E = carrier_test_lib:etsd(Config, Good, ["--join", SN]),
                etsd_test_lib:await_log(E, SN ++ ": (nodeup|TLS handshake: hostname_check_failed)",
                                        10000),
                Etsd = etsd_test_lib:log_has(E, SN ++ ": nodeup"),
                ct:pal("~p on OTP ~s: BEAM client ~p, etsd ~p",
                       [Conf, erlang:system_info(otp_release), Beam, Etsd]),
                Beam = Etsd,
                {Conf, Beam}
            end || Conf <- [dnssan_server, ipsan_server]],
    %% Exactly one of the two passes on any release.
    [false, true] = lists:sort([B || {_, B} <- Seen]),
    ok.

%% A client whose optfile Conf etsd must refuse, with Why in one log line;
%% a good peer is served before, during and after.
refused(Config, Conf, Why) ->
    Good = carrier_test_lib:start_peer(?config(carrier, Config),
                                       seed_test_lib:unique("tgood")),
    E = carrier_test_lib:etsd(Config, Good, []),
    EN = carrier_test_lib:enode(E),
    pong = carrier_test_lib:on(Good, net_adm, ping, [EN]),
    Bad = carrier_test_lib:start_peer(?config(carrier, with(Config, Conf)),
                                      seed_test_lib:unique("tbad")),
    pang = carrier_test_lib:on(Bad, net_adm, ping, [EN]),
    etsd_test_lib:await_log(E, Why, 10000),
    EN = carrier_test_lib:call_etsd(Good, E, erlang, node, []),
    [] = carrier_test_lib:on(Bad, erlang, nodes, [hidden]),
    ok.

certificate_from_an_unknown_ca_is_refused(Config) ->
    refused(Config, rogue, "peer certificate: unable to get local issuer certificate").

expired_certificate_is_refused(Config) ->
    refused(Config, expired, "peer certificate: certificate has expired").

missing_client_certificate_is_refused(Config) ->
    refused(Config, nocert, "peer sent no certificate").

%% This Common Test node runs plain inet_tcp: its ping reaches etsd's TLS
%% port in plaintext.
plaintext_peer_is_refused(Config) ->
    Good = carrier_test_lib:start_peer(?config(carrier, Config),
                                       seed_test_lib:unique("tgood")),
    E = carrier_test_lib:etsd(Config, Good, []),
    EN = carrier_test_lib:enode(E),
    pang = net_adm:ping(EN),
    etsd_test_lib:await_log(E, "not a TLS peer", 10000),
    EN = carrier_test_lib:call_etsd(Good, E, erlang, node, []),
    ok.

%% Junk, a bad record, a truncated record and silence on the TLS port:
%% each closes only its own connection (the last two at the handshake time
%% limit, 7 s); a good peer's calls are answered all the while.
hostile_bytes_cost_only_their_connection(Config) ->
    Good = carrier_test_lib:start_peer(?config(carrier, Config),
                                       seed_test_lib:unique("tgood")),
    E = carrier_test_lib:etsd(Config, Good, []),
    EN = carrier_test_lib:enode(E),
    pong = carrier_test_lib:on(Good, net_adm, ping, [EN]),
    Port = etsd_test_lib:etsd_port(E),
    Open = fun(Bytes) ->
                   {ok, S} = gen_tcp:connect({127,0,0,1}, Port, [binary, {active, false}]),
                   ok = gen_tcp:send(S, Bytes),
                   S
           end,
    Junk = Open(<<"GET / HTTP/1.0\r\n\r\n">>),
    BadRecord = Open(<<22, 3, 1, 0, 5, 255, 255, 255, 255, 255>>),
    Truncated = Open(<<22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3>>),
    Silent = Open(<<>>),
    T0 = erlang:monotonic_time(millisecond),
    {error, closed} = gen_tcp:recv(Junk, 0, 5000),
    {error, closed} = drain(BadRecord),
    %% While two connections stall, the good peer's calls are answered.
    [EN = carrier_test_lib:call_etsd(Good, E, erlang, node, []) || _ <- lists:seq(1, 20)],
    {error, closed} = gen_tcp:recv(Truncated, 0, 15000),
    {error, closed} = gen_tcp:recv(Silent, 0, 15000),
    Waited = erlang:monotonic_time(millisecond) - T0,
    ct:pal("stalled connections closed after ~p ms", [Waited]),
    true = Waited >= 6000,
    etsd_test_lib:await_log(E, "not a TLS peer", 5000),
    etsd_test_lib:await_log(E, "handshake not finished in 7000 ms", 5000),
    EN = carrier_test_lib:call_etsd(Good, E, erlang, node, []),
    ok.

%% A bad record gets an alert, then the close.
drain(S) ->
    case gen_tcp:recv(S, 0, 5000) of
        {ok, _Alert} -> drain(S);
        Other -> Other
    end.

unsupported_optfile_option_stops_etsd_naming_it(Config) ->
    Run = fun(Args) ->
                  etsd_test_lib:run(etsd_test_lib:etsd_path(),
                                    ["--name", "tlsopt@127.0.0.1", "--cookie", "c" | Args])
          end,
    {2, Out1} = Run(["--proto-dist", "inet_tls",
                     "--ssl-dist-optfile", optfile(Config, ciphers)]),
    match = re:run(Out1, "client: option ciphers is not supported", [{capture, none}]),
    {2, Out2} = Run(["--proto-dist", "inet_tls"]),
    match = re:run(Out2, "needs --ssl-dist-optfile", [{capture, none}]),
    {2, Out3} = Run(["--proto-dist", "inet_tls", "--ssl-dist-optfile", "/nonexistent.conf"]),
    match = re:run(Out3, "/nonexistent.conf: No such file", [{capture, none}]),
    {2, Out4} = Run(["--proto-dist", "inet_tcp", "--ssl-dist-optfile",
                     optfile(Config, good)]),
    match = re:run(Out4, "needs --proto-dist inet_tls", [{capture, none}]),
    ct:pal("~s~s~s~s", [Out1, Out2, Out3, Out4]),
    ok.

%% inet6_tls: TLS over IPv6, nodes named x@::1 (certificates for ::1).
inet6_tls_runs_the_same_over_ipv6(Config) ->
    C6 = lists:keystore(carrier, 1, Config,
                        {carrier, carrier("inet6_tls", "::1", optfile(Config, good6))}),
    ok = carrier_test_lib:new_both_ways(C6),
    [E] = get(etsds),
    etsd_test_lib:await_log(E, "TLSv1.[23] established", 5000),
    ok.

%% The other way round: etsd's own certificate is from a CA the cluster
%% does not trust. The BEAM node refuses it (its alert), etsd logs that
%% once per attempt and keeps running.
etsd_refused_by_the_cluster_logs_why(Config) ->
    Good = carrier_test_lib:start_peer(?config(carrier, Config),
                                       seed_test_lib:unique("tgood")),
    E = carrier_test_lib:etsd(with(Config, rogue), Good, []),
    GN = atom_to_list(element(2, Good)),
    etsd_test_lib:await_log(E, GN ++ ": TLS (handshake|read): .*alert", 10000),
    false = etsd_test_lib:log_has(E, GN ++ ": nodeup"),
    [] = carrier_test_lib:on(Good, erlang, nodes, [hidden]),
    ok.
