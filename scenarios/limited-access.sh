# limited-access — a counting semaphore for processes (gate).
# Sourced by ./launch (helpers: start, wait_all, check, say; $WORK is scratch).

about_limited_access() {
  echo "6 gates share a 2-slot semaphore: never more than 2 inside; a holder killed with kill -9 frees its slot"
}

# max_inside LOG: the most "enter"s without their "exit" at any point of LOG.
max_inside() {
  awk '$1=="enter"{n++; if(n>m)m=n} $1=="exit"{n--} END{print m+0}' "$1"
}

# wait_status TEXT: wait (at most 10s) until gate --status --json contains TEXT.
wait_status() {
  local n=0
  until gate --name demo --status --json 2>/dev/null | grep -q "$1"; do
    ((n++ < 200)) || { echo "status never showed $1"; return 1; }
    sleep 0.05
  done
}

run_limited_access() {
  local i log="$WORK/occupancy.log" rc=0 a b
  say "the seed's demo: 6 gates over 2 slots"
  for i in 1 2 3 4 5 6; do
    start "gate $i" gate --name demo --slots 2 --id "$i" --hold "$((RANDOM % 400 + 100))ms"
  done
  wait_all || rc=1
  say "8 commands under the gate record when they enter and leave"
  for i in 1 2 3 4 5 6 7 8; do
    start "cmd $i" gate --name demo -- sh -c "echo enter \$\$ >> '$log'; sleep 0.2; echo exit \$\$ >> '$log'"
  done
  wait_all || rc=1
  check "never more than 2 inside at once (most seen: $(max_inside "$log"))" \
    test "$(max_inside "$log")" -le 2 || rc=1
  check "all 8 ran" test "$(grep -c '^enter' "$log")" -eq 8 || rc=1
  say "two holders for 1000s, a waiter, then kill -9 of one holder"
  gate --name demo -- sleep 1000 & a=$!
  gate --name demo -- sleep 1000 & b=$!
  wait_status '"free":0' || rc=1
  start "waiter" gate --name demo --timeout 30s -- echo "waiter got in"
  wait_status '"waiting":1' || rc=1
  gate --name demo --status
  say "kill -9 $a (a holder)"
  kill -9 "$a"; wait "$a" 2>/dev/null
  check "the waiter got the killed holder's slot" wait_all || rc=1
  kill "$b"; wait "$b" 2>/dev/null
  gate --name demo --status
  gate --name demo --remove >/dev/null
  return $rc
}

panes_limited_access() {
  local i
  for i in 1 2 3 4; do
    pane "gate $i" "gate --name demo --slots 2 --id $i --hold 3s; gate --name demo --slots 2 --id $i --hold 2s"
  done
  pane "gate --status" "for i in \$(seq 30); do clear; gate --name demo --status; sleep 0.5; done; gate --name demo --remove"
}
