%% monitor_SUITE: monitors in both directions between BEAM processes and
%% etsd mailboxes, links and exit signals, and calls to missing names.
-module(monitor_SUITE).
-include_lib("common_test/include/ct.hrl").
-export([suite/0, all/0]).
-export([down_when_monitored_pid_mailbox_closes/1,
         down_when_monitored_name_mailbox_closes/1,
         noproc_at_once_for_missing_name_and_pid/1,
         gen_server_call_to_missing_name_fails_fast/1,
         etsd_monitor_sees_remote_process_exit/1,
         etsd_monitor_of_missing_remote_process_gets_noproc/1,
         links_and_exit_signals_do_not_kill_mailboxes/1,
         demonitor_stops_down/1,
         linked_process_gets_exit_when_mailbox_closes/1]).

suite() -> [{timetrap, {seconds, 60}}].

all() ->
    [down_when_monitored_pid_mailbox_closes, down_when_monitored_name_mailbox_closes,
     noproc_at_once_for_missing_name_and_pid, gen_server_call_to_missing_name_fails_fast,
     etsd_monitor_sees_remote_process_exit, etsd_monitor_of_missing_remote_process_gets_noproc,
     links_and_exit_signals_do_not_kill_mailboxes, demonitor_stops_down,
     linked_process_gets_exit_when_mailbox_closes].

%% A test mailbox on etsd (see node.c): {Pid, Msg} echoes, {close, Reason}
%% closes it, {monitor, Target, ReplyTo} monitors a process.
new_mailbox(Node, Name) ->
    {etsd_echo, Node} ! {new_mailbox, self(), Name},
    receive {mailbox, Pid} when is_pid(Pid) -> Pid
    after 5000 -> ct:fail(no_mailbox)
    end.

echo(To, Term) ->
    To ! {self(), Term},
    receive Term -> ok after 5000 -> ct:fail({no_echo, To}) end.

start(Config, Name) ->
    etsd_test_lib:start_etsd(#{config => Config, name => Name}).

down_when_monitored_pid_mailbox_closes(Config) ->
    E = #{node := Node} = start(Config, "mon_pid"),
    Mb = new_mailbox(Node, undefined),
    echo(Mb, hi),
    Ref = monitor(process, Mb),
    Mb ! {close, {shutdown, because}},
    receive {'DOWN', Ref, process, Mb, {shutdown, because}} -> ok
    after 5000 -> ct:fail(no_down)
    end,
    0 = etsd_test_lib:stop_etsd(E).

down_when_monitored_name_mailbox_closes(Config) ->
    E = #{node := Node} = start(Config, "mon_name"),
    Mb = new_mailbox(Node, mon_test_name),
    echo({mon_test_name, Node}, via_name),
    Ref = monitor(process, {mon_test_name, Node}),
    Mb ! {close, normal},
    receive {'DOWN', Ref, process, {mon_test_name, Node}, normal} -> ok
    after 5000 -> ct:fail(no_down)
    end,
    %% The name is free again.
    Ref2 = monitor(process, {mon_test_name, Node}),
    receive {'DOWN', Ref2, process, _, noproc} -> ok after 5000 -> ct:fail(no_noproc) end,
    0 = etsd_test_lib:stop_etsd(E).

noproc_at_once_for_missing_name_and_pid(Config) ->
    E = #{node := Node} = start(Config, "mon_noproc"),
    R1 = monitor(process, {no_such_name, Node}),
    receive {'DOWN', R1, process, {no_such_name, Node}, noproc} -> ok
    after 5000 -> ct:fail(no_noproc_name)
    end,
    Mb = new_mailbox(Node, undefined),
    Mb ! {close, normal},
    R0 = monitor(process, Mb),
    receive {'DOWN', R0, process, Mb, _} -> ok after 5000 -> ct:fail(no_down) end,
    R2 = monitor(process, Mb),
    receive {'DOWN', R2, process, Mb, noproc} -> ok
    after 5000 -> ct:fail(no_noproc_pid)
    end,
    0 = etsd_test_lib:stop_etsd(E).

gen_server_call_to_missing_name_fails_fast(Config) ->
    E = #{node := Node} = start(Config, "mon_call"),
    %% With DIST_MONITOR_NAME etsd answers the call's monitor with noproc,
    %% so the call fails with noproc instead of waiting for its timeout.
    {'EXIT', {noproc, {gen_server, call, _}}} =
        (catch gen_server:call({no_such_server, Node}, hello, 30000)),
    0 = etsd_test_lib:stop_etsd(E).

etsd_monitor_sees_remote_process_exit(Config) ->
    E = #{node := Node} = start(Config, "mon_out"),
    Mb = new_mailbox(Node, undefined),
    Target = spawn(fun() -> receive {stop, R} -> exit(R) end end),
    Mb ! {monitor, Target, self()},
    Ref = receive {monitored, R} -> R after 5000 -> ct:fail(no_monitor) end,
    Target ! {stop, {custom, reason}},
    receive {'DOWN', Ref, process, Target, {custom, reason}} -> ok
    after 5000 -> ct:fail(no_down_forwarded)
    end,
    %% By name, on a BEAM peer whose registered process then exits.
    {ok, Peer, PNode} = etsd_test_lib:start_peer(etsd_test_lib:unique_name("mon_out_p")),
    Named = peer:call(Peer, erlang, apply,
                      [fun() ->
                               P = spawn(fun() -> receive stop -> ok end end),
                               register(mon_target, P), P
                       end, []]),
    Self = self(),
    Fwd = peer:call(Peer, erlang, spawn, [fun() -> fwd(Self) end]),
    Mb ! {monitor, {mon_target, PNode}, self()},
    Ref2 = receive {monitored, R2} -> R2 after 5000 -> ct:fail(no_monitor2) end,
    sync_via(Mb, Fwd),
    Named ! stop,
    receive {'DOWN', Ref2, process, {mon_target, PNode}, normal} -> ok
    after 5000 -> ct:fail(no_down_by_name)
    end,
    %% And noconnection when the peer goes away.
    Other = peer:call(Peer, erlang, spawn, [fun() -> receive stop -> ok end end]),
    Mb ! {monitor, Other, self()},
    Ref3 = receive {monitored, R3} -> R3 after 5000 -> ct:fail(no_monitor3) end,
    sync_via(Mb, Fwd),
    peer:stop(Peer),
    receive {'DOWN', Ref3, process, Other, noconnection} -> ok
    after 5000 -> ct:fail(no_noconnection)
    end,
    0 = etsd_test_lib:stop_etsd(E).

fwd(To) -> receive M -> To ! M, fwd(To) end.

%% etsd sends its MONITOR_P and then this echo on the same connection, so
%% when the echo comes back through the peer, the peer has the monitor.
sync_via(Mb, Fwd) ->
    Tag = make_ref(),
    Mb ! {Fwd, {sync, Tag}},
    receive {sync, Tag} -> ok after 5000 -> ct:fail(no_sync) end.

etsd_monitor_of_missing_remote_process_gets_noproc(Config) ->
    E = #{node := Node} = start(Config, "mon_out_noproc"),
    Mb = new_mailbox(Node, undefined),
    Mb ! {monitor, {not_registered_here, node()}, self()},
    Ref = receive {monitored, R} -> R after 5000 -> ct:fail(no_monitor) end,
    receive {'DOWN', Ref, process, {not_registered_here, _}, noproc} -> ok
    after 5000 -> ct:fail(no_noproc)
    end,
    0 = etsd_test_lib:stop_etsd(E).

links_and_exit_signals_do_not_kill_mailboxes(Config) ->
    E = #{node := Node} = start(Config, "mon_link"),
    Mb = new_mailbox(Node, undefined),
    Mb ! {link_exit_to, self()},
    %% link, unlink (UNLINK_ID, answered with UNLINK_ID_ACK), link again,
    %% then a linked process dies and an exit/2 arrives.
    Linker = spawn(fun() ->
                           process_flag(trap_exit, true),
                           link(Mb), unlink(Mb), link(Mb),
                           receive die -> exit(linked_died) end
                   end),
    echo(Mb, after_links),
    Linker ! die,
    receive {'EXIT', Linker, linked_died} -> ok
    after 5000 -> ct:fail(no_exit_forwarded)
    end,
    exit(Mb, kill),
    receive {'EXIT', _, kill} -> ok after 5000 -> ct:fail(no_exit2_forwarded) end,
    echo(Mb, still_alive),
    %% Linking to a pid that is gone gives noproc back.
    Mb ! {close, normal},
    process_flag(trap_exit, true),
    link(Mb),
    receive {'EXIT', Mb, noproc} -> ok after 5000 -> ct:fail(no_noproc_link) end,
    process_flag(trap_exit, false),
    echo({etsd_echo, Node}, done),
    0 = etsd_test_lib:stop_etsd(E).

demonitor_stops_down(Config) ->
    E = #{node := Node} = start(Config, "mon_demon"),
    Mb = new_mailbox(Node, undefined),
    Ref = monitor(process, Mb),
    true = demonitor(Ref),
    Ref2 = monitor(process, Mb),
    Mb ! {close, bye},
    receive {'DOWN', Ref2, process, Mb, bye} -> ok after 5000 -> ct:fail(no_down) end,
    %% Signals from one node arrive in order: after this echo, a DOWN for
    %% Ref would already be here.
    echo({etsd_echo, Node}, sync),
    receive {'DOWN', Ref, _, _, _} -> ct:fail(down_after_demonitor) after 0 -> ok end,
    0 = etsd_test_lib:stop_etsd(E).

linked_process_gets_exit_when_mailbox_closes(Config) ->
    E = #{node := Node} = start(Config, "mon_linkexit"),
    Mb = new_mailbox(Node, undefined),
    Self = self(),
    Linked = spawn(fun() ->
                           process_flag(trap_exit, true),
                           link(Mb),
                           Self ! linked,
                           receive {'EXIT', Mb, R} -> Self ! {got_exit, R} end
                   end),
    receive linked -> ok after 5000 -> ct:fail(not_linked) end,
    %% The link is in place once an echo has come back after it.
    echo(Mb, after_link),
    Mb ! {close, {bye, Linked}},
    receive {got_exit, {bye, Linked}} -> ok after 5000 -> ct:fail(no_exit) end,
    0 = etsd_test_lib:stop_etsd(E).
