# discover: processes started in any order find each other through a registry
# file, then meet. One member is killed with SIGKILL before the group is
# complete; it is pruned, a replacement takes its id, and the group completes.

about_discover() {
  echo "5 members in scrambled order meet via a registry file; one is killed mid-way and replaced"
}

# One member of the demo group; its output is kept in $WORK/ID.out for the checks.
_discover_member() {
  discover --name demo --id "$1" --members 5 --timeout 30s | tee "$WORK/$1.out"
}

run_discover() {
  local rc=0 victim i
  say "members arrive in the order eve, carol, alice, dave; dave is then killed with SIGKILL"
  for id in eve carol alice; do start "$id" _discover_member "$id"; done
  discover --name demo --id dave --members 5 --timeout 30s >/dev/null 2>&1 &
  victim=$!
  for ((i = 0; i < 600; i++)); do   # wait (at most 30 s) until dave is registered
    discover --list --name demo 2>/dev/null | grep -q '^dave' && break
    sleep 0.05
  done
  discover --list --name demo | sed 's/^/[list] /'
  kill -9 "$victim"; wait "$victim" 2>/dev/null
  say "killed dave (pid $victim); a new dave and bob arrive"
  start dave _discover_member dave
  start bob _discover_member bob
  wait_all || rc=1
  local lists
  lists=$(cat "$WORK"/*.out | sed 's/^[^ ]* found: //' | sort -u)
  check "all five members exited 0" test $rc -eq 0 || rc=1
  check "each printed the same list: $lists" test "$(cat "$WORK"/*.out | wc -l)" -eq 5 -a "$lists" = "[alice, bob, carol, dave, eve]" || rc=1
  check "the last one out removed the registry" test ! -e "$SYNCOMM_DIR/discover.demo.reg" || rc=1
  return $rc
}

panes_discover() {
  pane "carol" "discover --name demo --id carol --members 3"
  pane "alice" "discover --name demo --id alice --members 3"
  pane "bob" "sleep 1; discover --list --name demo; discover --name demo --id bob --members 3"
}
