# scenarios/ping.sh — the seed's "Local ping server": ping-server answers
# `ping` with `pong` over TCP and a local socket; ping-client measures it.
# Sourced by ./launch (which provides start, stop_all, check, say, $WORK).

about_ping() {
  echo "ping-server answers ping with pong over TCP and a local socket; ping-client times it and floods it"
}

# not CMD...: succeeds when CMD fails (for check).
ping_not() { ! "$@"; }

run_ping() {
  local log="$WORK/server.log" port="" rc=0 spid i
  say "ping-server --tcp 127.0.0.1:0 --local demo   (port 0: the kernel picks a free one)"
  ping-server --tcp 127.0.0.1:0 --local demo --idle-timeout 5s >"$log" 2>&1 &
  spid=$!
  PIDS+=("$spid")   # so launch's stop_all ends it if anything below fails
  for i in $(seq 200); do grep -q '^listening on local socket' "$log" && break; sleep 0.05; done
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
  [[ -n $port ]] || { echo "ping-server did not start:"; cat "$log"; kill "$spid"; return 1; }
  sed 's/^/[server] /' "$log"

  say "ping-client over TCP: three pings, 100 ms apart"
  check "3 of 3 answered over TCP" ping-client --tcp "127.0.0.1:$port" -c 3 -i 100ms || rc=1
  say "ping-client over the local socket, 32 bytes of payload"
  check "3 of 3 answered over the local socket" ping-client --local demo -c 3 -i 100ms -s 32 || rc=1
  say "a second server on the same local name must refuse to start"
  check "second server refused" ping_not ping-server --tcp 127.0.0.1:0 --local demo || rc=1
  say "flood: 8 connections, 20000 pings as fast as they go"
  check "flood answered every ping" ping-client --tcp "127.0.0.1:$port" --flood --clients 8 -c 20000 || rc=1
  say "flood --reconnect: a new connection per ping, as the seed's client did"
  check "reconnect flood answered every ping" \
    ping-client --tcp "127.0.0.1:$port" --flood --reconnect --clients 4 -c 2000 || rc=1

  say "the server's log (its first lines, and how many):"
  grep '^Server received' "$log" | head -n 3 | sed 's/^/[server] /'
  echo "[server] ... $(grep -c '^Server received' "$log") requests logged"

  say "SIGTERM: the server stops accepting, answers what is in flight, removes its socket"
  kill -TERM "$spid"
  wait "$spid"; local code=$?
  check "server exited 0 on SIGTERM" test "$code" -eq 0 || rc=1
  check "local socket removed" test ! -e "$SYNCOMM_DIR/ping.demo.sock" || rc=1
  say "nobody listening now: the client says so and exits 1"
  check "client reports the refused pings" ping_not ping-client --tcp "127.0.0.1:$port" -c 2 -i 100ms || rc=1
  return $rc
}

panes_ping() {
  pane "ping-server" "ping-server --local demo"
  pane "ping-client, local socket" "sleep 1; ping-client --local demo -c 20 -i 500ms"
  pane "ping-client, TCP" "sleep 1; ping-client -c 20 -s 16"
  pane "flood" "sleep 3; ping-client --flood --clients 8 --duration 5s"
}
