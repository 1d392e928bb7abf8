#!/usr/bin/env python3
"""The seed's Python examples, written the way the seed wrote them, and timed.

The course's originals (Synchronization and Communication, VUB) use
multiprocessing and sockets. This script runs each of them as the seed did and
measures what `syncomm-bench` compares syncomm against. Standard library only.

    python3 bench/seed.py              # a readable table
    python3 bench/seed.py --json       # one JSON object, the keys below
    python3 bench/seed.py --quick      # about 15 s instead of about a minute
    python3 bench/seed.py --only ping_rtt_us,gate_cycle_us

| key                  | the seed's code, measured                                       | unit |
|----------------------|-----------------------------------------------------------------|------|
| notify_wakeup_us     | multiprocessing.Condition: notify -> the waiting process runs   | us   |
| board_append_per_s   | Array/Value updates under the Array's lock, a monitor attached  | /s   |
| pipeline_lines_per_s | createProcesses: 3 filter processes joined by Pipe()            | /s   |
| worker_call_us       | sendFunction/workProcess: in/out Queue round trip per call      | us   |
| worker_calls_per_s   | the same queues, one worker per CPU, many calls in flight       | /s   |
| ping_rtt_us          | socketserver TCP server, one connection, one ping at a time     | us   |
| ping_reconnect_per_s | the seed's runClient: a new TCP connection per ping             | /s   |
| scribe_lines_per_s   | writeMessage: 4 writer processes under one multiprocessing.Lock | /s   |
| gate_cycle_us        | multiprocessing.Semaphore acquire+release (`with sem:`)         | us   |
| discover_meet_ms     | discover: 16 processes, until every one has found all 16        | ms   |
| guard_overhead_ms    | guardProcess (timeout 1 s) around a command that ends at once   | ms   |

Notes on faithfulness:
- Processes are forked (the start method the seed had on Linux).
- The seed's print() calls are kept, but stdout is /dev/null while measuring,
  so the terminal does not slow Python down; the JSON goes to the real stdout.
- The ping server's handler loops over one connection for ping_rtt_us (the
  seed's handler answers once per connection, which ping_reconnect_per_s uses).
- guardProcess sleeps its whole timeout before it looks, so its "overhead" is
  the timeout itself; measured with 1 s, far less than `guard 10 true` asks for.
- A sub-benchmark that fails or overruns its time limit gives null, and the
  others still run. Every child process dies with this one (PR_SET_PDEATHSIG).
"""

import argparse
import ctypes
import json
import multiprocessing
import os
import random
import signal
import socket
import socketserver
import statistics
import sys
import tempfile
import threading
import time


CTX = multiprocessing.get_context("fork")
Process = CTX.Process
Pipe = CTX.Pipe
Array = CTX.Array
Value = CTX.Value

REAL_STDOUT = sys.stdout


def now_us():
    """CLOCK_MONOTONIC in microseconds: one clock for every process."""
    return time.monotonic_ns() / 1000.0


def die_with_parent():
    """In a child: be killed when the parent dies, so nothing is left behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child(target, *args, daemon=True):
    """A forked child process running `target(*args)`, dying with its parent."""

    def run(*a):
        die_with_parent()
        target(*a)

    p = Process(target=run, args=args)
    p.daemon = daemon
    return p


def stop_children():
    for p in multiprocessing.active_children():
        p.terminate()
    for p in multiprocessing.active_children():
        p.join(1)
        if p.is_alive():
            p.kill()


# ---- Notification on Condition ----------------------------------------------
# The seed:
#   def consume():                       def produce():
#       with condVar:                        for ctr in range(0,100):
#           while resource.count(22) is 0:       with condVar:
#               condVar.wait()                       i = random.randint(0, 100)
#                                                    if i is 22: condVar.notify()
#                                                    resource += [i]
# Here the producer notifies on every round, stamping the time, and the
# consumer records how long after the notify it ran. `ack` makes sure the
# consumer is waiting before the next notify.


def notify_consumer(cond, seq, ack, stamp, lat, n):
    with cond:
        for i in range(n):
            ack.value = i
            cond.notify_all()
            while seq.value <= i:
                cond.wait()
            lat[i] = now_us() - stamp.value


def notify_wakeup_us(quick):
    n = 500 if quick else 3000
    cond = CTX.Condition()
    seq = Value("q", 0, lock=False)
    ack = Value("q", -1, lock=False)
    stamp = Value("d", 0.0, lock=False)
    lat = Array("d", n, lock=False)
    consumer = child(notify_consumer, cond, seq, ack, stamp, lat, n)
    consumer.start()
    for i in range(n):
        with cond:
            while ack.value < i:
                cond.wait()
            stamp.value = now_us()
            seq.value = i + 1
            cond.notify()
    consumer.join(10)
    return statistics.median(lat[n // 10 :])


# ---- Data sharing -----------------------------------------------------------
# The seed:
#   arr = Array('i', range(5))
#   remainActive = Value('i', 1)
#   process = Process(target = runProcess, args = (arr, remainActive))
#   monitor = Process(target = runMonitor, args = (arr, remainActive))
# The producer appends random values to a ring in the Array under its lock; the
# monitor takes snapshots under the same lock while remainActive is set.


def board_producer(arr, total, remain, seconds, rate):
    cap = len(arr)
    lock = arr.get_lock()
    count = 0
    start = time.monotonic()
    deadline = start + seconds
    while True:
        for _ in range(256):
            with lock:
                arr[total.value % cap] = random.randint(0, 100)
                total.value += 1
            count += 1
        if time.monotonic() > deadline:
            break
    rate.value = count / (time.monotonic() - start)
    remain.value = 0


def board_monitor(arr, total, remain):
    while remain.value:
        with arr.get_lock():
            snapshot = (total.value, arr[:])
        print("total", snapshot[0], "recent", snapshot[1][:5])
        time.sleep(0.001)


def board_append_per_s(quick):
    seconds = 1.0 if quick else 4.0
    arr = Array("i", 64)
    total = Value("q", 0, lock=False)  # guarded by arr's lock
    remain = Value("i", 1)
    rate = Value("d", 0.0)
    producer = child(board_producer, arr, total, remain, seconds, rate)
    monitor = child(board_monitor, arr, total, remain)
    monitor.start()
    producer.start()
    producer.join(seconds + 20)
    monitor.join(5)
    if producer.exitcode != 0:
        raise RuntimeError("producer failed")
    return rate.value


# ---- Pipes & Filters --------------------------------------------------------
# The seed's createFilter and createProcesses, as written.


def createFilter(func, inc, out):
    while True:
        arg = inc.recv()
        res = func(arg)
        out.send(res)


def createProcesses(functions):
    pIn, pOut = Pipe()
    pipelineIn = pIn

    for f in functions:
        (toNext, pEnd) = Pipe()
        p = child(createFilter, f, pOut, toNext)
        p.daemon = True
        p.start()
        pOut = pEnd
    return (pipelineIn, pEnd)


def add1(x):
    return x + 1


def mul2(x):
    return x * 2


def neg(x):
    return -x


def pipeline_lines_per_s(quick):
    n = 20_000 if quick else 100_000
    pipe_in, pipe_out = createProcesses([add1, mul2, neg])

    def feed():
        for i in range(n):
            pipe_in.send(i)

    start = time.monotonic()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    for i in range(n):
        r = pipe_out.recv()
        if r != -((i + 1) * 2):
            raise RuntimeError(f"record {i}: got {r}")
    elapsed = time.monotonic() - start
    feeder.join()
    return n / elapsed


# ---- Send functions to worker process ---------------------------------------
# The seed's sendFunction and workProcess, as written.


def sendFunction(function, args, inQueue, outQueue):
    inQueue.put((function, args)),
    return outQueue.get()


def workProcess(inQueue, outQueue):
    while True:
        tuple = inQueue.get()
        func = tuple[0]
        args = tuple[1]
        res = func(*args)
        outQueue.put(res)


def add(a, b):
    return a + b


def worker_call_us(quick):
    n = 500 if quick else 3000
    in_q, out_q = CTX.Queue(), CTX.Queue()
    child(workProcess, in_q, out_q).start()
    samples = []
    for i in range(n + n // 10):
        t = now_us()
        if sendFunction(add, (i, 1), in_q, out_q) != i + 1:
            raise RuntimeError("wrong answer")
        samples.append(now_us() - t)
    return statistics.median(samples[n // 10 :])


def worker_calls_per_s(quick):
    n = 10_000 if quick else 50_000
    in_q, out_q = CTX.Queue(), CTX.Queue()
    for _ in range(os.cpu_count() or 1):
        child(workProcess, in_q, out_q).start()
    # Warm up: every worker running.
    for i in range(100):
        sendFunction(add, (i, 1), in_q, out_q)
    inflight = threading.Semaphore(64)

    def feed():
        for i in range(n):
            inflight.acquire()
            in_q.put((add, (i, 1)))

    start = time.monotonic()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    total = 0
    for _ in range(n):
        total += out_q.get()
        inflight.release()
    elapsed = time.monotonic() - start
    feeder.join()
    if total != sum(range(1, n + 1)):
        raise RuntimeError("answers lost or wrong")
    return n / elapsed


# ---- Local ping server ------------------------------------------------------
# The seed's handler and client, as written (prints go to /dev/null here).

HOST = "127.0.0.1"
BUFFER_SIZE = 1024


class requestHandler(socketserver.BaseRequestHandler):
    def handle(self):
        message = self.request.recv(BUFFER_SIZE)
        message = message.decode("utf-8")
        address = self.client_address[0]
        port = self.client_address[1]
        print("Server received:", message, "from", address, ":", port)
        self.request.sendall(bytes("pong", "utf-8"))


class loopingHandler(socketserver.BaseRequestHandler):
    """The seed's handler, answering every ping on its connection."""

    def handle(self):
        while True:
            message = self.request.recv(BUFFER_SIZE)
            if not message:
                return
            message = message.decode("utf-8")
            address = self.client_address[0]
            port = self.client_address[1]
            print("Server received:", message, "from", address, ":", port)
            self.request.sendall(bytes("pong", "utf-8"))


def serve(handler, port_out):
    server = socketserver.TCPServer((HOST, 0), handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def start_server(handler):
    mine, theirs = Pipe()
    child(serve, handler, theirs).start()
    if not mine.poll(10):
        raise RuntimeError("the server did not start")
    return mine.recv()


def runClient(PORT):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect((HOST, PORT))
    sock.sendall(bytes("ping", "utf-8"))
    reply = sock.recv(BUFFER_SIZE)
    reply = reply.decode("utf-8")
    print("Client received:", reply)
    return reply


def ping_rtt_us(quick):
    n = 1000 if quick else 5000
    port = start_server(loopingHandler)
    sock = socket.create_connection((HOST, port))
    samples = []
    for _ in range(n + n // 10):
        t = now_us()
        sock.sendall(b"ping")
        if sock.recv(BUFFER_SIZE) != b"pong":
            raise RuntimeError("no pong")
        samples.append(now_us() - t)
    sock.close()
    return statistics.median(samples[n // 10 :])


def ping_reconnect_per_s(quick):
    seconds = 1.0 if quick else 3.0
    port = start_server(requestHandler)
    runClient(port)
    count = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if runClient(port) != "pong":
            raise RuntimeError("no pong")
        count += 1
    return count / (time.monotonic() - start)


# ---- Access shared file -----------------------------------------------------
# The seed's writeMessage, as written: opens 'mutexfile.txt' in the current
# directory (a scratch directory here) under the lock.


def writeMessage(idx, message, lock):
    message = str(idx) + " mu: " + message + "\n"
    lock.acquire()
    f = open("mutexfile.txt", "a")
    f.write(message)
    lock.release()


def scribe_writer(idx, count, lock, go):
    go.wait()
    for k in range(count):
        writeMessage(idx, "message " + str(k), lock)


def scribe_lines_per_s(quick):
    total = 20_000 if quick else 100_000
    writers = 4
    lock = CTX.Lock()
    go = CTX.Event()
    procs = [child(scribe_writer, i, total // writers, lock, go) for i in range(writers)]
    for p in procs:
        p.start()
    start = time.monotonic()
    go.set()
    for p in procs:
        p.join(60)
    elapsed = time.monotonic() - start
    with open("mutexfile.txt") as f:
        lines = sum(1 for _ in f)
    os.unlink("mutexfile.txt")
    if lines != total:
        raise RuntimeError(f"{lines} lines written, {total} expected")
    return total / elapsed


# ---- Limited access ---------------------------------------------------------
# The seed's `with sem:` around the critical section, with nothing inside, in
# another process: the cost of one acquire + release.


def gate_cycles(sem, batches, per_batch, out):
    for b in range(batches):
        t = now_us()
        for _ in range(per_batch):
            with sem:
                pass
        out[b] = (now_us() - t) / per_batch


def gate_cycle_us(quick):
    batches, per_batch = (50, 200) if quick else (200, 500)
    sem = CTX.Semaphore(1)
    out = Array("d", batches, lock=False)
    p = child(gate_cycles, sem, batches, per_batch, out)
    p.start()
    p.join(60)
    if p.exitcode != 0:
        raise RuntimeError("the semaphore process failed")
    return statistics.median(out[:])


# ---- Find processes ---------------------------------------------------------
# The seed's discover, leaveName and getNames, as written (path: a scratch file).

path = "discover.txt"


def discover(name, members, lock):
    leaveName(name, lock)
    print(name, "left name")
    names = []
    found = 0
    while found is not members:
        names = getNames(lock)
        found = len(names)
    print(name, "found:", names)


def leaveName(name, lock):
    name = str(name) + "\n"
    with lock:
        f = open(path, "a")
        f.write(name)


def getNames(lock):
    with lock:
        f = open(path, "r")
        str = f.read()
    return str.strip().split("\n")


def discover_meet_ms(quick):
    runs = 2 if quick else 5
    members = 16
    samples = []
    for _ in range(runs):
        open(path, "w").close()
        lock = CTX.Lock()
        procs = [child(discover, i, members, lock) for i in range(members)]
        start = time.monotonic()
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        elapsed = time.monotonic() - start
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError("a member did not finish")
        samples.append(elapsed * 1000)
    os.unlink(path)
    return statistics.median(samples)


# ---- Kill process -----------------------------------------------------------
# The seed's guardProcess and getKillSig, as written.


def guardProcess(process, timeout):
    time.sleep(timeout)
    if process.is_alive():
        pid = process.pid
        os.kill(pid, getKillSig())
        print("Process killed...")
        os._exit(1)
    else:
        print("Process finished...")
        os._exit(0)


def getKillSig():
    try:
        return signal.SIGKILL
    except AttributeError:
        return signal.CTRL_C_EVENT


def run_true():
    os.execvp("true", ["true"])


def guarded(timeout):
    process = Process(target=run_true)
    process.start()
    guardProcess(process, timeout)


def guard_overhead_ms(quick):
    runs = 3 if quick else 5
    samples = []
    for _ in range(runs):
        start = time.monotonic()
        # Not daemonic: guardProcess's caller starts a process of its own.
        p = child(guarded, 1.0, daemon=False)
        p.start()
        p.join(30)
        samples.append((time.monotonic() - start) * 1000)
        if p.exitcode != 0:
            raise RuntimeError(f"guardProcess exited {p.exitcode}")
    return statistics.median(samples)


# ---- main -------------------------------------------------------------------

BENCHES = [
    ("notify_wakeup_us", notify_wakeup_us, "us"),
    ("board_append_per_s", board_append_per_s, "/s"),
    ("pipeline_lines_per_s", pipeline_lines_per_s, "/s"),
    ("worker_call_us", worker_call_us, "us"),
    ("worker_calls_per_s", worker_calls_per_s, "/s"),
    ("ping_rtt_us", ping_rtt_us, "us"),
    ("ping_reconnect_per_s", ping_reconnect_per_s, "/s"),
    ("scribe_lines_per_s", scribe_lines_per_s, "/s"),
    ("gate_cycle_us", gate_cycle_us, "us"),
    ("discover_meet_ms", discover_meet_ms, "ms"),
    ("guard_overhead_ms", guard_overhead_ms, "ms"),
]


class Overrun(Exception):
    pass


def on_alarm(signum, frame):
    raise Overrun()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (~15 s)")
    parser.add_argument("--only", default="", help="comma-separated keys to run")
    args = parser.parse_args()
    only = {k for k in args.only.split(",") if k}
    unknown = only - {k for k, _, _ in BENCHES}
    if unknown:
        parser.error("unknown key(s): " + ", ".join(sorted(unknown)))
    limit = 15 if args.quick else 90

    results = {}
    devnull = open(os.devnull, "w")
    old_cwd = os.getcwd()
    signal.signal(signal.SIGALRM, on_alarm)
    with tempfile.TemporaryDirectory(prefix="syncomm-seed-") as scratch:
        os.chdir(scratch)
        for key, bench, unit in BENCHES:
            if only and key not in only:
                continue
            sys.stdout = devnull
            signal.alarm(limit)
            try:
                value = bench(args.quick)
                results[key] = round(float(value), 3)
            except Overrun:
                print(f"seed.py: {key}: did not finish within {limit} s", file=sys.stderr)
                results[key] = None
            except Exception as e:  # a failed sub-benchmark gives null
                print(f"seed.py: {key}: {type(e).__name__}: {e}", file=sys.stderr)
                results[key] = None
            finally:
                signal.alarm(0)
                sys.stdout = REAL_STDOUT
                stop_children()
            if not args.json:
                v = results[key]
                print(f"{key:22} {'failed' if v is None else f'{v:,.1f}'} {unit}", flush=True)
        os.chdir(old_cwd)
    if args.json:
        print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
