%% hostile_peer_SUITE: raw TCP clients that break the distribution
%% protocol. etsd logs each, drops only that connection (or frame), and
%% keeps serving the other peers. Also raw clients that use what the
%% protocol allows and OTP's own nodes do not send (yet).
-module(hostile_peer_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0, init_per_testcase/2, end_per_testcase/2]).
-export([garbage_before_handshake_is_refused/1,
         truncated_handshakes_are_dropped/1,
         silent_client_is_dropped_after_setup_time/1,
         absurd_length_prefixes_close_only_that_connection/1,
         malformed_frames_after_valid_handshake_are_dropped/1,
         wrong_digest_from_raw_client_is_refused/1,
         stranger_using_a_connected_name_cannot_cut_it_off/1,
         name_with_digest_flag_only_and_data_after_the_name_is_accepted/1,
         pending_handshakes_under_one_name_are_replaced_in_turn/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [garbage_before_handshake_is_refused, truncated_handshakes_are_dropped,
     silent_client_is_dropped_after_setup_time,
     absurd_length_prefixes_close_only_that_connection,
     malformed_frames_after_valid_handshake_are_dropped,
     wrong_digest_from_raw_client_is_refused,
     stranger_using_a_connected_name_cannot_cut_it_off,
     name_with_digest_flag_only_and_data_after_the_name_is_accepted,
     pending_handshakes_under_one_name_are_replaced_in_turn].

%% Flags a raw client advertises: OTP 25's mandatory set plus what etsd
%% needs to talk back (dist.hrl values).
-define(FLAGS, (16#04 bor 16#10 bor 16#80 bor 16#100 bor 16#200 bor 16#400 bor 16#800
                bor 16#10000 bor 16#20000 bor 16#40000 bor 16#01000000 bor 16#04000000
                bor 16#08 bor 16#20 bor 16#4000 bor 16#02000000 bor (16#04 bsl 32))).

init_per_testcase(Case, Config) ->
    E = etsd_test_lib:start_etsd(#{config => Config, name => atom_to_list(Case)}),
    %% A well-behaved BEAM peer that stays connected through each case.
    {ok, Peer, _} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("hp_good")),
    ok = good_echo(Peer, E, before),
    [{etsd, E}, {good, Peer} | Config].

end_per_testcase(_Case, Config) ->
    E = ?config(etsd, Config),
    Peer = ?config(good, Config),
    %% etsd is still up and still serves the good peer and this node.
    ok = good_echo(Peer, E, 'after'),
    {etsd_echo, maps:get(node, E)} ! {self(), local_after},
    receive local_after -> ok after 5000 -> ct:fail(no_local_echo) end,
    peer:stop(Peer),
    0 = etsd_test_lib:stop_etsd(E),
    ok.

good_echo(Peer, #{node := Node}, Tag) ->
    peer:call(Peer, erlang, apply,
              [fun() ->
                       {etsd_echo, Node} ! {self(), {good, Tag}},
                       receive {good, Tag} -> ok after 5000 -> timeout end
               end, []]).

connect(Config) ->
    Port = etsd_test_lib:etsd_port(?config(etsd, Config)),
    {ok, S} = gen_tcp:connect("127.0.0.1", Port, [binary, {active, false}, {packet, 0}]),
    S.

%% etsd closed the socket (possibly after answering something first).
await_closed(S, Ms) ->
    case gen_tcp:recv(S, 0, Ms) of
        {error, closed} -> ok;
        {error, econnreset} -> ok;
        {ok, _} -> await_closed(S, Ms);
        {error, timeout} -> ct:fail(not_closed)
    end.

name_msg(Name) ->
    N = list_to_binary(Name),
    Body = <<$N, ?FLAGS:64, 1:32, (byte_size(N)):16, N/binary>>,
    <<(byte_size(Body)):16, Body/binary>>.

recv_msg(S) ->
    {ok, <<L:16>>} = gen_tcp:recv(S, 2, 5000),
    {ok, B} = gen_tcp:recv(S, L, 5000),
    B.

%% Runs the initiator side of a handshake on a raw socket; returns the
%% node name used. Cookie = wrong makes the reply digest wrong.
raw_handshake(S, Cookie) ->
    Name = etsd_test_lib:unique_name("hostile") ++ "@127.0.0.1",
    ok = gen_tcp:send(S, name_msg(Name)),
    <<"sok">> = recv_msg(S),
    <<$N, _Flags:64, Chal:32, _Cre:32, NL:16, _PName:NL/binary>> = recv_msg(S),
    MyChal = 12345,
    Digest = erlang:md5(Cookie ++ integer_to_list(Chal)),
    ok = gen_tcp:send(S, <<21:16, $r, MyChal:32, Digest/binary>>),
    {Name, MyChal}.

log(Config) -> etsd_test_lib:etsd_log(?config(etsd, Config)).

await_log(Config, Re) ->
    etsd_test_lib:await_log(?config(etsd, Config), Re, 10000).

%% ---- cases ----

garbage_before_handshake_is_refused(Config) ->
    S1 = connect(Config),
    ok = gen_tcp:send(S1, <<"GET / HTTP/1.1\r\nHost: x\r\n\r\n">>),
    await_closed(S1, 5000),
    await_log(Config, "handshake failed: handshake message too long"),
    %% Random garbage on several sockets at once, each a short message so
    %% it is parsed (not just waited on).
    rand:seed(exsss, {7, 7, 7}),
    Socks = [begin
                 S = connect(Config),
                 Len = rand:uniform(40),
                 G = list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, Len)]),
                 ok = gen_tcp:send(S, <<Len:16, G/binary>>),
                 S
             end || _ <- lists:seq(1, 20)],
    [await_closed(S, 5000) || S <- Socks],
    %% etsd may close a socket just before it writes the line that says why.
    etsd_test_lib:await(fun() ->
        length(binary:matches(log(Config), <<"handshake failed">>)) >= 21
    end, 5000, handshake_failures_logged).

truncated_handshakes_are_dropped(Config) ->
    Msg = name_msg("trunc@127.0.0.1"),
    %% Every prefix of a name message, then the client goes away.
    [begin
         S = connect(Config),
         ok = gen_tcp:send(S, binary:part(Msg, 0, K)),
         gen_tcp:close(S)
     end || K <- lists:seq(1, byte_size(Msg) - 1)],
    %% A client that stops after the status, before its challenge reply.
    S2 = connect(Config),
    ok = gen_tcp:send(S2, name_msg("trunc2@127.0.0.1")),
    <<"sok">> = recv_msg(S2),
    _Challenge = recv_msg(S2),
    ok = gen_tcp:send(S2, <<21:16, $r, 1:32>>),
    gen_tcp:close(S2),
    etsd_test_lib:await(fun() ->
                                length(binary:matches(log(Config),
                                                      <<"handshake failed: connection closed by peer">>))
                                    >= byte_size(Msg)
                        end, 10000, truncated_logged).

silent_client_is_dropped_after_setup_time(Config) ->
    S = connect(Config),
    S2 = connect(Config),
    ok = gen_tcp:send(S2, binary:part(name_msg("half@127.0.0.1"), 0, 6)),
    %% etsd gives a handshake 7 s, as BEAM's net_setuptime.
    await_closed(S, 10000),
    await_closed(S2, 10000),
    await_log(Config, "handshake not finished in 7000 ms").

absurd_length_prefixes_close_only_that_connection(Config) ->
    %% In the handshake: a 64 KiB message announced.
    S1 = connect(Config),
    ok = gen_tcp:send(S1, <<16#ffff:16, $N>>),
    await_closed(S1, 5000),
    %% After a valid handshake: a 4 GiB frame is over the limit.
    S2 = connect(Config),
    {_, _} = raw_handshake(S2, atom_to_list(erlang:get_cookie())),
    _Ack = recv_msg(S2),
    ok = gen_tcp:send(S2, <<16#ffffffff:32, 112, 131>>),
    await_closed(S2, 5000),
    await_log(Config, "frame over the size limit"),
    %% A 1 GiB frame announced, 3 bytes sent, then silence and close:
    %% etsd waits for it without allocating 1 GiB, and lets it go.
    S3 = connect(Config),
    {N3, _} = raw_handshake(S3, atom_to_list(erlang:get_cookie())),
    _Ack3 = recv_msg(S3),
    ok = gen_tcp:send(S3, <<(1 bsl 30):32, 112, 131, 104>>),
    gen_tcp:close(S3),
    await_log(Config, N3 ++ ": nodedown").

malformed_frames_after_valid_handshake_are_dropped(Config) ->
    Node = maps:get(node, ?config(etsd, Config)),
    S = connect(Config),
    {Name, _} = raw_handshake(S, atom_to_list(erlang:get_cookie())),
    _Ack = recv_msg(S),
    ok = inet:setopts(S, [{packet, 4}]),
    Ctl = fun(T) -> term_to_binary(T) end,
    Frames = [<<112>>,                                  % nothing after 112
              <<113, 131, 106>>,                        % not pass-through
              <<112, 1, 2, 3, 4>>,                      % garbage
              <<112, 131, 104, 5, 97>>,                 % truncated tuple
              <<112, (Ctl({6, not_a_pid, '', etsd_echo}))/binary>>, % bad field, no message
              <<112, (Ctl({999, x}))/binary>>,          % unknown operation
              <<112, (Ctl({2, '', self()}))/binary, 131>>, % message cut off
              <<112, (Ctl(not_a_tuple))/binary>>,
              <<112, (Ctl({6, self(), '', etsd_echo}))/binary,
                (term_to_binary(x))/binary, 0, 0>>]  % trailing bytes
        ++ [<<112, (list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, 30)]))/binary>>
            || _ <- lists:seq(1, 20)],
    [ok = gen_tcp:send(S, F) || F <- Frames],
    %% The connection is still there: a valid REG_SEND to etsd_echo with
    %% a pid of our fake node comes back to us on this socket.
    Fake = fake_pid(Name),
    ok = gen_tcp:send(S, <<112, (Ctl({6, Fake, '', etsd_echo}))/binary,
                           (term_to_binary({Fake, still_here}))/binary>>),
    still_here = recv_send_to(S, Fake),
    await_log(Config, "unknown control message 999"),
    await_log(Config, "malformed distribution frame"),
    gen_tcp:close(S),
    pong = net_adm:ping(Node).

wrong_digest_from_raw_client_is_refused(Config) ->
    S = connect(Config),
    {_, _} = raw_handshake(S, "wrong cookie"),
    await_closed(S, 5000),
    await_log(Config, "wrong cookie").

%% A pid on node Name (NEW_PID_EXT), built by hand: this node is not Name.
fake_pid(Name) ->
    N = list_to_binary(Name),
    binary_to_term(<<131, 88, 119, (byte_size(N)), N/binary, 1:32, 0:32, 1:32>>).

%% Reads frames until a SEND/SEND_SENDER to Pid arrives; returns its message.
recv_send_to(S, Pid) ->
    case gen_tcp:recv(S, 0, 5000) of
        {ok, <<>>} -> recv_send_to(S, Pid); % tick
        {ok, <<112, Rest/binary>>} ->
            {CtlT, Used} = binary_to_term(Rest, [used]),
            <<_:Used/binary, MsgBin/binary>> = Rest,
            case CtlT of
                {2, _, Pid} -> binary_to_term(MsgBin);
                {22, _, Pid} -> binary_to_term(MsgBin);
                _ -> recv_send_to(S, Pid)
            end
    end.

%% A raw client claims the name of the connected good peer: etsd answers
%% 'alive', the client insists ('true') but cannot prove the cookie, and
%% the good peer's connection is untouched (dist_util drops the old
%% connection only after the challenge).
stranger_using_a_connected_name_cannot_cut_it_off(Config) ->
    Peer = ?config(good, Config),
    GoodName = atom_to_list(peer:call(Peer, erlang, node, [])),
    S = connect(Config),
    ok = gen_tcp:send(S, name_msg(GoodName)),
    <<"salive">> = recv_msg(S),
    ok = gen_tcp:send(S, <<5:16, "strue">>),
    <<$N, _:64, Chal:32, _/binary>> = recv_msg(S),
    Digest = erlang:md5("not the cookie" ++ integer_to_list(Chal)),
    ok = gen_tcp:send(S, <<21:16, $r, 1:32, Digest/binary>>),
    await_closed(S, 5000),
    await_log(Config, "wrong cookie"),
    ok = good_echo(Peer, ?config(etsd, Config), still_connected),
    false = etsd_test_lib:log_has(?config(etsd, Config), GoodName ++ ": nodedown").

%% dist_util.erl (OTP 27, 29): recv_name_new/2 splits the name off and
%% ignores the rest of the 'N' message ("any extra data after the node Name
%% must be accepted and ignored", erl_dist_protocol), and
%% expand_mandatory_25_flag/1 reads DFLAG_MANDATORY_25_DIGEST (16#04000000)
%% as the whole OTP 25 mandatory set. A client that relies on both gets a
%% full connection.
name_with_digest_flag_only_and_data_after_the_name_is_accepted(Config) ->
    S = connect(Config),
    Name = etsd_test_lib:unique_name("digestonly") ++ "@127.0.0.1",
    N = list_to_binary(Name),
    Flags = 16#04000000 bor 16#08 bor 16#20 bor 16#4000 bor 16#02000000 bor (16#04 bsl 32),
    Body = <<$N, Flags:64, 1:32, (byte_size(N)):16, N/binary, "data of a later release">>,
    ok = gen_tcp:send(S, <<(byte_size(Body)):16, Body/binary>>),
    <<"sok">> = recv_msg(S),
    <<$N, _:64, Chal:32, _:32, NL:16, _:NL/binary>> = recv_msg(S),
    Cookie = atom_to_list(erlang:get_cookie()),
    MyChal = 4242,
    ok = gen_tcp:send(S, <<21:16, $r, MyChal:32, (erlang:md5(Cookie ++ integer_to_list(Chal)))/binary>>),
    Ack = erlang:md5(Cookie ++ integer_to_list(MyChal)),
    <<$a, Ack/binary>> = recv_msg(S),
    ok = inet:setopts(S, [{packet, 4}]),
    Fake = fake_pid(Name),
    ok = gen_tcp:send(S, <<112, (term_to_binary({6, Fake, '', etsd_echo}))/binary,
                           (term_to_binary({Fake, digest_only}))/binary>>),
    digest_only = recv_send_to(S, Fake),
    gen_tcp:close(S).

%% A node whose connection attempts pile up (etsd's loop was busy, say
%% loading a big data dir) sends its name on several sockets: each newer
%% attempt replaces the one still in its handshake. Replacing one freed it
%% while the peer list was being walked (a use-after-free that
%% AddressSanitizer reports under make ct-asan, and a segfault after a 10M
%% object load).
pending_handshakes_under_one_name_are_replaced_in_turn(Config) ->
    Name = etsd_test_lib:unique_name("hostile_pile") ++ "@127.0.0.1",
    Socks = [begin
                 S = connect(Config),
                 ok = gen_tcp:send(S, name_msg(Name)),
                 <<"sok">> = recv_msg(S),
                 <<$N, _/binary>> = recv_msg(S),
                 S
             end || _ <- lists:seq(1, 4)],
    %% every attempt but the last was replaced and closed; the last waits
    %% for its challenge reply
    [await_closed(S, 5000) || S <- lists:droplast(Socks)],
    {error, timeout} = gen_tcp:recv(lists:last(Socks), 0, 200),
    [gen_tcp:close(S) || S <- Socks],
    ok.
