# data-sharing — a producer appends to the shared board while monitors read
# consistent snapshots through its sequence counter, never taking its lock;
# `monitor --stop` clears `active` and the producer stops.

about_data_sharing() {
  echo "monitors read lock-free seqlock snapshots of the board while the producer appends; monitor --stop ends it"
}

run_data_sharing() {
  local rc=0 out="$WORK/share"
  mkdir -p "$out"
  say "a monitor starts first and waits for the board; a producer runs flat out"
  start monitor bash -c "monitor --name share --interval 250ms | tee '$out/monitor'"
  sleep 0.3
  start producer producer --name share
  sleep 1.5
  say "monitor --stop clears active: the producer stops, the monitor ends"
  monitor --name share --stop | sed 's/^/[stop] /'
  wait_all || rc=1
  check "the monitor saw the producer running" grep -q "active yes" "$out/monitor" || rc=1
  check "the monitor's last snapshot shows active no" \
    bash -c "tail -n 1 '$out/monitor' | grep -q 'active no'" || rc=1
  say "a missing board with --once is a clear error (exit 1)"
  monitor --name share --once 2>&1 | sed 's/^/[monitor] /'
  check "monitor --once on a missing board exits 1" \
    bash -c "! monitor --name share --once 2>/dev/null" || rc=1
  return $rc
}

panes_data_sharing() {
  pane "producer" "producer --name share --interval 1ms"
  pane "monitor" "monitor --name share --interval 250ms"
  pane "monitor --json" "monitor --name share --interval 1s --json"
  pane "monitor --stop (after 15 s)" "sleep 15; monitor --name share --stop"
}
