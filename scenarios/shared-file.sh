# shared-file — writers append to one file under an exclusive flock (scribe).
# Sourced by ./launch (helpers: start, wait_all, check, say; $WORK is scratch).

about_shared_file() {
  echo "4 scribes append to one file under flock, one is kill -9'd holding the lock; scribe --verify checks every line"
}

run_shared_file() {
  local f="$WORK/shared.txt" i victim n=0
  say "4 writers x 5000 lines, plus a slow one holding the lock 100ms per line"
  for i in 1 2 3 4; do start "scribe $i" scribe --file "$f" --id "$i" --count 5000; done
  start "scribe slow" scribe --file "$f" --id slow --count 5 --hold 100ms
  wait_all || return 1
  say "a writer that holds the lock for 1000s after its first line, killed with kill -9"
  scribe --file "$f" --id victim --count 3 --hold 1000s &
  victim=$!
  until grep -q '^victim mu:' "$f" 2>/dev/null; do
    ((n++ < 200)) || { kill -9 "$victim"; echo "victim never wrote"; return 1; }
    sleep 0.05
  done
  kill -9 "$victim"; wait "$victim" 2>/dev/null
  say "the lock went with it: two more writers get through"
  start "scribe after1" scribe --file "$f" --id after1 --count 1000
  start "scribe after2" scribe --file "$f" --id after2 --count 1000
  wait_all || return 1
  say "first lines of the file:"; head -n 3 "$f"
  check "the file verifies: whole lines, each writer's in order, none lost or repeated" \
    scribe --verify "$f" --writers 8
  check "the writers that finished wrote all their lines" \
    bash -c "[[ \$(grep -c '^1 mu:' '$f') == 5000 && \$(grep -c '^after2 mu:' '$f') == 1000 ]]"
}

panes_shared_file() {
  local i
  for i in 1 2 3; do
    pane "writer $i" "scribe --file $WORK/shared.txt --id $i --count 20 --hold 150ms && tail -n 5 $WORK/shared.txt"
  done
  pane "verify" "sleep 12; scribe --verify $WORK/shared.txt --writers 3 --count 20"
}
