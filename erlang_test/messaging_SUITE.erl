%% messaging_SUITE: messages between BEAM and etsd: random terms round
%% trip intact, a 100 MB message arrives while ticks flow, and a peer that
%% stops reading is cut off while others keep receiving.
-module(messaging_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0]).
-export([random_terms_round_trip_via_echo/1,
         terms_from_beam_peer_round_trip/1,
         hundred_mb_message_arrives_intact_with_ticks_flowing/1,
         slow_reader_cut_off_while_others_keep_receiving/1,
         alias_send_both_ways/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [random_terms_round_trip_via_echo, terms_from_beam_peer_round_trip,
     hundred_mb_message_arrives_intact_with_ticks_flowing,
     slow_reader_cut_off_while_others_keep_receiving, alias_send_both_ways].

%% ---- random terms ----

random_term(0) -> random_leaf();
random_term(D) ->
    case rand:uniform(9) of
        1 -> list_to_tuple([random_term(D - 1) || _ <- lists:seq(1, rand:uniform(5) - 1)]);
        2 -> [random_term(D - 1) || _ <- lists:seq(1, rand:uniform(6) - 1)];
        3 -> maps:from_list([{random_term(D - 1), random_term(D - 1)}
                             || _ <- lists:seq(1, rand:uniform(4) - 1)]);
        4 -> [random_leaf() | random_leaf()];  %% improper list
        5 -> maps:from_list([{I, random_leaf()} || I <- lists:seq(1, 40)]); %% hash-ordered map
        _ -> random_leaf()
    end.

random_leaf() ->
    case rand:uniform(16) of
        1 -> rand:uniform(255);
        2 -> rand:uniform(1 bsl 27) - (1 bsl 26);
        3 -> (rand:uniform(1 bsl 62)) * (1 bsl 70) * (case rand:uniform(2) of 1 -> 1; 2 -> -1 end);
        4 -> rand:uniform() * 1.0e10 - 5.0e9;
        5 -> list_to_atom("a" ++ integer_to_list(rand:uniform(1000)));
        6 -> 'ünïcödé_atom';
        7 -> crypto_free_bytes(rand:uniform(40) - 1);
        8 -> <<(rand:uniform(255)):7>>;
        9 -> "a string";
        10 -> self();
        11 -> make_ref();
        12 -> fun lists:map/2;
        13 -> [];
        14 -> {};
        15 -> hd(erlang:ports());
        16 -> -0.0
    end.

crypto_free_bytes(N) -> list_to_binary([rand:uniform(256) - 1 || _ <- lists:seq(1, N)]).

echo_round_trip(Node, Term) ->
    Tag = make_ref(),
    {etsd_echo, Node} ! {self(), {Tag, Term}},
    receive {Tag, Got} -> Got
    after 5000 -> ct:fail({no_echo, Term})
    end.

%% ---- cases ----

random_terms_round_trip_via_echo(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "msg_rand"}),
    rand:seed(exsss, {1, 2, 3}),
    lists:foreach(fun(_) ->
                          T = random_term(4),
                          case echo_round_trip(Node, T) of
                              G when G =:= T -> ok;
                              G -> ct:fail({mismatch, T, G})
                          end
                  end, lists:seq(1, 1000)),
    %% A local fun (NEW_FUN_EXT) comes back callable.
    F = fun(X) -> X + 1 end,
    F2 = echo_round_trip(Node, F),
    2 = F2(1),
    0 = etsd_test_lib:stop_etsd(E).

terms_from_beam_peer_round_trip(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "msg_peer"}),
    {ok, Peer, _} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("msg_peer_p")),
    Terms = [{I, lists:seq(1, I), <<I:64>>, #{I => [I]}} || I <- lists:seq(1, 200)],
    Res = peer:call(Peer, erlang, apply,
                    [fun() ->
                             [begin
                                  {etsd_echo, Node} ! {self(), T},
                                  receive T -> ok after 5000 -> {lost, T} end
                              end || T <- Terms]
                     end, []], 30000),
    true = lists:all(fun(R) -> R =:= ok end, Res),
    peer:stop(Peer),
    0 = etsd_test_lib:stop_etsd(E).

hundred_mb_message_arrives_intact_with_ticks_flowing(Config) ->
    %% Short ticktime on both sides: a stalled loop would drop the peer.
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "msg_big",
                                                    args => ["--net-ticktime", "2"],
                                                    wait => epmd}),
    {ok, Peer, _} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("msg_big_p"),
                                             ["-kernel", "net_ticktime", "2"]),
    Res = peer:call(Peer, erlang, apply,
                    [fun() ->
                             pong = net_adm:ping(Node),
                             monitor_node(Node, true),
                             Big = binary:copy(<<"0123456789abcdef">>, 100 * 1024 * 1024 div 16),
                             Msg = {big, Big, erlang:md5(Big)},
                             {etsd_echo, Node} ! {self(), Msg},
                             Got = receive {big, _, _} = M -> M after 30000 -> timeout end,
                             %% Then stay connected for more than net_ticktime.
                             Down = receive {nodedown, Node} -> nodedown after 3000 -> none end,
                             {Got =:= Msg, byte_size(element(2, Got)), Down}
                     end, []], 50000),
    {true, 104857600, none} = Res,
    false = etsd_test_lib:log_has(E, "net_tick_timeout"),
    peer:stop(Peer),
    0 = etsd_test_lib:stop_etsd(E).

slow_reader_cut_off_while_others_keep_receiving(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "msg_slow",
                                                    args => ["--max-queue", "8000000"]}),
    {ok, Slow, SlowNode} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("msg_slow_p")),
    SlowPid = peer:call(Slow, erlang, spawn, [fun() -> receive stop -> ok end end]),
    pong = peer:call(Slow, net_adm, ping, [Node]),
    OsPid = peer:call(Slow, os, getpid, []),
    os:cmd("kill -STOP " ++ OsPid),
    try
        Chunk = binary:copy(<<7>>, 1024 * 1024),
        Self = self(),
        %% Flood the stopped peer through etsd; keep checking that this
        %% node still gets its own echoes meanwhile.
        lists:foreach(fun(I) ->
                              {etsd_echo, Node} ! {SlowPid, {I, Chunk}},
                              ok = echo_ok(Node, Self, I)
                      end, lists:seq(1, 40)),
        etsd_test_lib:await_log(E, atom_to_list(SlowNode) ++ ": write queue over .*slow reader", 10000),
        etsd_test_lib:await_log(E, atom_to_list(SlowNode) ++ ": nodedown", 5000),
        ok = echo_ok(Node, Self, after_cutoff)
    after
        os:cmd("kill -CONT " ++ OsPid)
    end,
    peer:stop(Slow),
    0 = etsd_test_lib:stop_etsd(E).

echo_ok(Node, Self, I) ->
    {etsd_echo, Node} ! {Self, {small, I}},
    receive {small, I} -> ok after 5000 -> {no_echo, I} end.

%% ALIAS_SEND: BEAM sends to an alias of an etsd mailbox, and etsd sends
%% to an alias of a BEAM process (what a gen_server:call reply needs).
alias_send_both_ways(Config) ->
    E = #{node := Node} = etsd_test_lib:start_etsd(#{config => Config, name => "msg_alias"}),
    {etsd_echo, Node} ! {new_mailbox, self(), undefined},
    Mb = receive {mailbox, P} -> P after 5000 -> ct:fail(no_mailbox) end,
    Mb ! {make_alias, self()},
    EtsdAlias = receive {alias, A} -> A after 5000 -> ct:fail(no_alias) end,
    EtsdAlias ! {self(), via_etsd_alias},
    receive via_etsd_alias -> ok after 5000 -> ct:fail(no_alias_echo) end,
    MyAlias = alias(),
    Mb ! {send_alias, MyAlias, {to_my_alias, 1}},
    receive {to_my_alias, 1} -> ok after 5000 -> ct:fail(no_alias_delivery) end,
    %% An alias that was removed drops the message, as on BEAM.
    unalias(MyAlias),
    Mb ! {send_alias, MyAlias, {to_my_alias, 2}},
    Mb ! {self(), sync},
    receive sync -> ok after 5000 -> ct:fail(no_sync) end,
    receive {to_my_alias, 2} -> ct:fail(delivered_after_unalias) after 0 -> ok end,
    0 = etsd_test_lib:stop_etsd(E).
