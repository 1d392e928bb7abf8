# scenarios/worker.sh — the worker pool: send function calls to supervised
# worker processes from any shell (sourced by ./launch).

about_worker() {
  echo "a supervised pool of worker processes: calls from any shell; a child that aborts or hangs is reported and replaced"
}

run_worker() {
  local name=demo rc=0 i sock
  sock="$SYNCOMM_DIR/worker.$name.sock"
  say "worker serve: 2 children (this same program in --stdio mode), calls time out after 2s"
  start serve worker serve --name "$name" --workers 2 --task-timeout 2s
  for i in $(seq 200); do [[ -S $sock ]] && break; sleep 0.05; done
  check "the pool's socket appears" test -S "$sock" || return 1

  say "worker list"
  worker list --name "$name" | sed 's/^/    /'
  say "calls from this shell"
  check "add 2 3 = 5" test "$(worker call --name "$name" add 2 3)" = 5 || rc=1
  check "fib 90 = 2880067194370816120" test "$(worker call --name "$name" fib 90)" = 2880067194370816120 || rc=1
  check "factor 360 = 2 2 2 3 3 5" test "$(worker call --name "$name" factor 360)" = "2 2 2 3 3 5" || rc=1
  check "--json prints one object" bash -c "worker call --name $name --json upper 'hi there' | grep -q '\"result\":\"HI THERE\"'" || rc=1
  check "div 1 0 fails: 'worker: div failed: division by zero', exit 1" \
    bash -c "out=\$(worker call --name $name div 1 0 2>&1); [[ \$? == 1 && \$out == 'worker: div failed: division by zero' ]]" || rc=1

  say "20 calls at once from 20 processes"
  local dir="$WORK/results"; mkdir -p "$dir"
  local calls=()
  for i in $(seq 1 20); do worker call --name "$name" mul "$i" "$i" >"$dir/$i" & calls+=($!); done
  wait "${calls[@]}"
  local sum=0; for i in $(seq 1 20); do sum=$((sum + $(cat "$dir/$i"))); done
  check "sum of the 20 squares is 2870" test "$sum" = 2870 || rc=1

  say "faults: a panic, an abort, a call past --task-timeout"
  local before after
  before=$(worker call --name "$name" pid)
  worker call --name "$name" panic 2>&1 | sed 's/^/    /'
  check "a panicking call is an error and the child lives on" \
    bash -c "kill -0 $before" || rc=1
  local out
  out=$(worker call --name "$name" abort 2>&1)
  echo "    $out"
  check "an aborting child is reported: 'died from signal 6 while running abort'" \
    grep -q 'died from signal 6 while running abort' <<<"$out" || rc=1
  worker call --name "$name" sleep_ms 5000 2>&1 | sed 's/^/    /'
  check "the pool still serves" test "$(worker call --name "$name" add 40 2)" = 42 || rc=1

  say "SIGTERM to the server: it finishes the calls in flight, stops its children, removes its socket"
  after=$(worker call --name "$name" pid)
  local server
  server=$(ps -o ppid= -p "$after" | tr -d ' ')
  worker call --name "$name" sleep_ms 1000 >"$WORK/last" &
  local last=$! c
  # Wait until a child is inside that call (sleeping in the kernel).
  for i in $(seq 400); do
    for c in $(pgrep -P "$server"); do grep -q nanosleep "/proc/$c/wchan" 2>/dev/null && break 2; done
    sleep 0.05
  done
  kill -TERM "$server"
  wait "$last"
  check "the call in flight at SIGTERM was answered" test "$(cat "$WORK/last")" = 1000 || rc=1
  wait_all || rc=1
  check "the socket is gone" test ! -e "$sock" || rc=1
  check "the children are gone" bash -c "! kill -0 $after 2>/dev/null" || rc=1
  return $rc
}

panes_worker() {
  pane "worker serve" "worker serve --name demo --workers 2 --task-timeout 2s"
  # Each call is echoed with its answer (or its error line).
  pane "calls" 'sleep 1; worker list --name demo; call() { printf "worker call %s  ->  %s\n" "$*" "$(worker call --name demo "$@" 2>&1)"; }; call add 2 3; call abort; call fib 90; call sleep_ms 5000; call add 40 2'
  pane "20 calls" 'sleep 1; for i in $(seq 1 20); do printf "worker call mul %s %s  ->  %s\n" $i $i "$(worker call --name demo mul $i $i 2>&1)"; sleep 0.3; done'
}
