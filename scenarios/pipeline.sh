# scenarios/pipeline.sh — pipes & filters: `filter` builds a chain of processes
# joined by pipe(2), one process per stage. Sourced by ./launch.

about_pipeline() { echo "filter: a chain of stage processes joined by pipe(2); failures named, head -1 quiet, no orphans"; }

panes_pipeline() {
  pane "filter" "seq 1 5 | filter 'add 1' 'mul 2' neg; seq 1 3000000 | filter --json 'add 1' 'mul 2' neg | tail -n 2"
  pane "records one by one" "yes hello | filter upper 'delay 300ms' 'grep HELLO' --json"
  pane "this session's processes" "watch -n 0.5 session-ps -o pid,ppid,args"
}

# running PID: the process exists and is not a zombie.
running() { [[ -r /proc/$1/stat ]] && ! grep -qE '^[0-9]+ \(.*\) [ZX]' "/proc/$1/stat" 2>/dev/null; }

run_pipeline() {
  local rc=0 out err pid stage

  say "the seed's chain: seq 1 5 | filter 'add 1' 'mul 2' neg  (three stage processes)"
  out=$(seq 1 5 | filter 'add 1' 'mul 2' neg | tr '\n' ' ')
  echo "  -> $out"
  check "prints -4 -6 -8 -10 -12" test "$out" = "-4 -6 -8 -10 -12 " || rc=1

  say "a bad record in the middle stage: printf '1\\n2\\nabc\\n' | filter pass 'mul 2' neg"
  err=$(printf '1\n2\nabc\n' | filter pass 'mul 2' neg 2>&1 >/dev/null); local code=$?
  echo "  -> $err (exit $code)"
  check "exit 1 naming stage 2 and line 3" test "$code" = 1 -a "$err" = "filter: stage 2 'mul 2' failed: line 3: \"abc\" is not an integer" || rc=1

  say "a reader that leaves early: yes 1 | filter 'add 1' 'mul 2' neg | head -1"
  out=$( (yes 1 | filter 'add 1' 'mul 2' neg 2>"$WORK/head.err"; echo "${PIPESTATUS[1]}" >"$WORK/head.rc") | head -1)
  echo "  -> $out; filter exit $(cat "$WORK/head.rc"), stderr '$(cat "$WORK/head.err")'"
  check "head -1 ends the chain quietly with exit 0" test "$out" = -4 -a "$(cat "$WORK/head.rc")" = 0 -a ! -s "$WORK/head.err" || rc=1

  say "records in/out per stage: seq 1 100000 | filter --json 'grep 7' 'mul 3' pass"
  err=$(seq 1 100000 | filter --json 'grep 7' 'mul 3' pass 2>&1 >/dev/null | tail -n 1)
  echo "  -> $err"
  check "JSON summary on the last line of stderr" grep -q '"ok":true' <<<"$err" || rc=1

  say "kill -9 one stage mid-stream: yes 7 | filter pass 'delay 5ms' pass, then kill -9 stage 2"
  mkfifo "$WORK/in"
  exec 3<>"$WORK/in"
  yes 7 >&3 &
  local yes_pid=$!
  filter pass 'delay 5ms' pass <"$WORK/in" >/dev/null 2>"$WORK/kill.err" &
  pid=$!
  stage=""
  for _ in $(seq 1 200); do
    stage=$(pgrep -P "$pid" -f 'report-fd.*delay 5ms' | head -n 1)
    [[ -n $stage ]] && break
    sleep 0.05
  done
  kill -9 "$stage" 2>/dev/null
  wait "$pid"; code=$?
  echo "  -> $(cat "$WORK/kill.err") (exit $code)"
  check "exit 1 naming the killed stage" test "$code" = 1 -a "$(cat "$WORK/kill.err")" = "filter: stage 2 'delay 5ms' was killed by signal 9 (SIGKILL)" || rc=1

  say "kill -9 the parent: its stages die with it (PR_SET_PDEATHSIG)"
  filter pass pass pass <"$WORK/in" >/dev/null &
  pid=$!
  local kids=""
  for _ in $(seq 1 200); do
    kids=$(pgrep -P "$pid" -f report-fd | tr '\n' ' ')
    [[ $(wc -w <<<"$kids") -eq 3 ]] && break
    sleep 0.05
  done
  echo "  -> parent $pid, stages $kids"
  kill -9 "$pid"; wait "$pid" 2>/dev/null
  local alive=1
  for _ in $(seq 1 100); do
    alive=0
    for k in $kids; do running "$k" && alive=1; done
    ((alive == 0)) && break
    sleep 0.05
  done
  check "no stage outlives its SIGKILLed parent" test "$alive" = 0 || rc=1
  kill "$yes_pid" 2>/dev/null; wait "$yes_pid" 2>/dev/null
  exec 3>&-
  return $rc
}
