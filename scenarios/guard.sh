# scenarios/guard.sh — guard: run a command under a deadline (a drop-in
# superset of timeout(1)) and kill everything it started. Sourced by ./launch.

about_guard() { echo "guard: a command that finishes in time, one that overruns and is killed with its whole tree, a watched pid"; }

panes_guard() {
  pane "in time" "guard -v 5 sh -c 'echo working; sleep 2; echo done'"
  pane "overrun, with a daemon" "guard -v 3 sh -c '(setsid sleep 300 &); echo stuck, with a daemon; exec sleep 300'"
  pane "this session's processes" "watch -n 0.5 session-ps -o pid,ppid,pgid,sid,args"
}

# running PID: the process exists and is not a zombie.
guard_running() { [[ -r /proc/$1/stat ]] && ! grep -qE '^[0-9]+ \(.*\) [ZX]' "/proc/$1/stat" 2>/dev/null; }

run_guard() {
  local rc=0 code daemon helper

  say "in time: guard -v 5 sh -c 'echo working; sleep 0.2; echo done'"
  guard -v 5 sh -c 'echo working; sleep 0.2; echo done' 2>&1 | sed 's/^/  /'
  code=${PIPESTATUS[0]}
  check "the command's own status comes back (0)" test "$code" = 0 || rc=1

  say "overrun: guard -v 1 sh -c 'start a daemon (setsid, double fork) and a helper; sleep 300'"
  guard -v 1 sh -c "(setsid sleep 300 & echo \$! > '$WORK/daemon.pid'); sleep 300 & echo \$! > '$WORK/helper.pid'; echo stuck; exec sleep 300" 2>&1 | sed 's/^/  /'
  code=${PIPESTATUS[0]}
  daemon=$(cat "$WORK/daemon.pid" 2>/dev/null); helper=$(cat "$WORK/helper.pid" 2>/dev/null)
  check "deadline passed: exit 124, as timeout(1)" test "$code" = 124 || rc=1
  check "the helper in its process group ($helper) is gone" test -n "$helper" -a ! -e "/proc/$helper" || rc=1
  check "the double-forked daemon ($daemon) is gone too (guard is its subreaper)" test -n "$daemon" -a ! -e "/proc/$daemon" || rc=1

  say "for comparison, timeout(1) 1 with the same command leaves the daemon behind"
  timeout 1 sh -c "(setsid sleep 300 & echo \$! > '$WORK/timeout.pid'); exec sleep 300"
  daemon=$(cat "$WORK/timeout.pid" 2>/dev/null)
  if [[ -n $daemon ]] && guard_running "$daemon"; then echo "  timeout(1) left daemon $daemon running; killing it"; kill -9 "$daemon"; fi

  say "watch a running process: sleep 300 & guard -v --pid \$! 0.5"
  sleep 300 & local sleeper=$!
  guard -v --pid "$sleeper" 0.5 2>&1 | sed 's/^/  /'
  code=${PIPESTATUS[0]}
  wait "$sleeper" 2>/dev/null
  check "it had to be killed: exit 124" test "$code" = 124 || rc=1
  check "the watched process is gone" bash -c "! kill -0 $sleeper 2>/dev/null" || rc=1

  say "bad arguments are guard's own failure, 125: guard soon true"
  guard soon true 2>&1 | sed 's/^/  /'
  code=${PIPESTATUS[0]}
  check "exit 125 with one line saying why" test "$code" = 125 || rc=1
  return $rc
}
