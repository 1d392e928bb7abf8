# notify — consumers sleep in the kernel until their value appears on the
# shared board; a producer killed holding the robust mutex is repaired by the
# next locker and a new producer continues.

about_notify() {
  echo "consumers sleep (robust mutex + futex condition in shared memory) until their value appears; kill -9 of the lock holder is repaired"
}

run_notify() {
  local rc=0 out="$WORK/notify"
  mkdir -p "$out"
  say "two consumers start first and wait for the board; a seeded producer appears"
  start c22 bash -c "consumer --name notify --until 22 --timeout 60s | tee '$out/c22'"
  start c99 bash -c "consumer --name notify --until 99 --timeout 60s | tee '$out/c99'"
  sleep 0.3
  start producer producer --name notify --seed 7 --count 2000 --interval 1ms
  wait_all || rc=1
  check "consumer for 22 found it after 117 values (seed 7)" \
    grep -q "^Lucky number 22 found after 117 values" "$out/c22" || rc=1
  check "consumer for 99 found it" grep -q "^Lucky number 99 found after" "$out/c99" || rc=1

  say "a producer is kill -9'ed while it holds the board's robust mutex mid-append"
  producer --name robust --seed 3 --hold-lock 60s --hold-after 100 >"$out/p1" 2>&1 &
  local p1=$!
  for _ in $(seq 200); do grep -q "holding the board lock" "$out/p1" && break; sleep 0.05; done
  kill -9 "$p1"; wait "$p1" 2>/dev/null
  echo "  producer $p1 killed while holding the lock"
  say "a new producer attaches: it gets EOWNERDEAD, repairs the board and goes on"
  producer --name robust --count 100 2>&1 | tee "$out/p2" | sed 's/^/[producer2] /'
  check "the new producer continued the board (101 values kept + 100 new)" \
    grep -q "board total 201" "$out/p2" || rc=1
  return $rc
}

panes_notify() {
  pane "consumer 22" "consumer --name notify --until 22"
  pane "consumer 99" "consumer --name notify --until 99 --timeout 2m"
  # As ./launch notify: a producer killed (kill -9) while it holds the board's
  # robust mutex mid-append, and a new producer that repairs the board and goes on.
  pane "producer: kill -9 holding the lock, then repair" 'sleep 2; producer --name notify --seed 7 --interval 20ms --hold-lock 60s --hold-after 150 > >(tee "$WORK/producer1") 2>&1 & p=$!; until grep -q "holding the board lock" "$WORK/producer1" 2>/dev/null; do sleep 0.1; done; sleep 3; echo "# kill -9 $p: it holds the board lock mid-append"; kill -9 $p; wait $p 2>/dev/null; sleep 2; echo "# a new producer: EOWNERDEAD, it repairs the board and goes on"; producer --name notify --interval 20ms --count 1000'
  pane "monitor" 'for i in 1 2; do monitor --name notify --interval 500ms; echo "# monitor exited $?"; done'
}
