#!/usr/bin/env bash
# The tom-member black box, shared by `make bench` (tests/lab/bench.sh) and `make compare`
# (tests/lab/compare.sh), so that both measure the same thing: a tom-helper and N tom-member processes on
# 127.0.0.1, driven only through their stdin and stdout, as an application would drive them.
#
#   tests/lab/blackbox.sh N SIZE MESSAGES
#
# Every member's stdin gets MESSAGES pre-generated SIZE-byte lines, written at once. Per member, delivered
# msgs/s = N*MESSAGES / (its last DELIVER line read - first line written); the median over members, and
# an equal-order check by hashing every member's output. Threads per member: the entries of
# /proc/PID/task of each member, sampled when the first member has read half of its deliveries (every
# thread is up then, none has ended) and the peak of a sample every 100 ms.
# Prints ONE JSON line on stdout; exit 0 only if every member delivered everything in the same order.
#
# Env: BIN (default ${CARGO_TARGET_DIR:-target}/release, from the repository root),
#      BLACKBOX_TIME_LIMIT seconds for the deliveries (default 300).
# The helper and the members die with the driver (they ask the kernel for SIGKILL when their parent
# ends), so not even a kill -9 of this script's driver leaves one behind; the driver itself is stopped by
# the trap.
set -uo pipefail

if [ $# -ne 3 ]; then
    echo "usage: tests/lab/blackbox.sh N SIZE MESSAGES" >&2
    exit 64
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${BIN:-${CARGO_TARGET_DIR:-$root/target}/release}

driver=""
cleanup() {
    if [ -n "$driver" ]; then
        kill -TERM "$driver" 2>/dev/null
        wait "$driver" 2>/dev/null
    fi
}
trap cleanup EXIT
# A signal ends the script (through the EXIT trap) instead of resuming it after the cleanup.
trap 'exit 130' INT TERM

python3 - "$bin" "$1" "$2" "$3" <<'EOF' &
import ctypes, hashlib, json, os, signal, socket, statistics, subprocess, sys, threading, time
bindir, n, size, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
procs = []
try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl  # Linux only; elsewhere the members are only stopped by stop() below
except (OSError, AttributeError):
    libc = None
def die_with_parent():
    # PR_SET_PDEATHSIG (1): the child gets SIGKILL when this driver ends, however it ends.
    if libc is not None:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
def stop(*_):
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try: p.wait(timeout=5)
        except Exception: pass
def threads_of(p):
    try: return len(os.listdir(f"/proc/{p.pid}/task"))
    except OSError: return None
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
result = {"system": "tom-member", "members": n, "size": size, "messages_per_member": m}
ok = False
try:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    errlog = open(os.devnull, "wb")
    procs.append(subprocess.Popen([f"{bindir}/tom-helper", "--size", str(n), "--port", str(port),
                                   "--bind", "127.0.0.1"], stderr=errlog, preexec_fn=die_with_parent))
    members = []
    for _ in range(n):
        # As in tom-bench: a saturated 2-core machine is slow, not dead, so no false suspicions here.
        p = subprocess.Popen([f"{bindir}/tom-member", "--helper", f"127.0.0.1:{port}", "--host", "127.0.0.1",
                              "--port", str(port + 1), "--failure-timeout-ms", "30000"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=errlog, bufsize=0, preexec_fn=die_with_parent)
        procs.append(p); members.append(p)
    # Wait for JOINED on every member (reading up to the end of that line).
    ranks, rest = [], []
    deadline = time.monotonic() + 30
    for p in members:
        buf = b""
        while b"JOINED" not in buf or not buf[buf.index(b"JOINED"):].count(b"\n"):
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk or time.monotonic() > deadline:
                raise RuntimeError("a member did not print JOINED")
            buf += chunk
        i = buf.index(b"JOINED"); j = buf.index(b"\n", i)
        ranks.append(int(buf[i:j].split()[1])); rest.append(buf[j + 1:])
    # Pre-generate each member's lines: SIZE-byte payloads, unique per origin.
    inputs = []
    for r in ranks:
        lines = []
        for k in range(m):
            head = f"{r}-{k}-".encode()
            lines.append(head + b"x" * max(0, size - len(head)) + b"\n")
        inputs.append(b"".join(lines))
    total = n * m
    go = threading.Event()
    finished = threading.Event()
    t0 = [0.0]
    done = [None] * n; counts = [0] * n; hashes = [None] * n
    mid = [None]; mid_lock = threading.Lock()
    peak = [0] * n
    def writer(idx):
        fd = members[idx].stdin.fileno(); view = memoryview(inputs[idx]); go.wait()
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            pass  # the member ended (or stop() ended it); its reader reports what it delivered
    def reader(idx):
        fd = members[idx].stdout.fileno(); h = hashlib.sha256(); c = 0; pending = rest[idx]
        partial = b""  # the bytes after the last newline read: a read may end inside "DELIVER "
        while True:
            if pending:
                h.update(pending)
                lines = partial + pending
                cut = lines.rfind(b"\n") + 1
                c += lines.count(b"DELIVER ", 0, cut); partial = lines[cut:]
                if c * 2 >= total and mid[0] is None:
                    with mid_lock:
                        if mid[0] is None:
                            mid[0] = [threads_of(p) for p in members]
                if c >= total:
                    done[idx] = time.monotonic(); break
            pending = os.read(fd, 1 << 20)
            if not pending: break
        counts[idx] = c; hashes[idx] = h.hexdigest()[:16]
    def sampler():
        while not finished.wait(0.1):
            for idx, p in enumerate(members):
                peak[idx] = max(peak[idx], threads_of(p) or 0)
    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(n)]
    readers = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(n)]
    watch = threading.Thread(target=sampler, daemon=True)
    for t in threads + readers + [watch]: t.start()
    time.sleep(0.2)
    t0[0] = time.monotonic(); go.set()
    limit = float(os.environ.get("BLACKBOX_TIME_LIMIT", "300"))
    for t in readers:
        t.join(timeout=max(0.0, t0[0] + limit - time.monotonic()))
    finished.set(); watch.join()
    rates = [round(total / (d - t0[0])) if d else None for d in done]
    ok = all(rates) and len(set(hashes)) == 1
    mids = [x for x in (mid[0] or []) if x]
    result.update({"per_member_msgs_per_s": rates,
                   "delivered_per_s_median": statistics.median(rates) if all(rates) else None,
                   "secs": [round(d - t0[0], 3) if d else None for d in done],
                   "delivered": counts, "order_hashes": hashes,
                   "order_equal": all(rates) and len(set(hashes)) == 1,
                   "threads_mid_run": mid[0], "threads_peak": peak,
                   "threads_per_member_median": statistics.median(mids) if mids else None,
                   "ok": ok})
except Exception as e:
    result.update({"ok": False, "error": str(e)})
finally:
    stop()
print(json.dumps(result), flush=True)
sys.exit(0 if ok else 1)
EOF
driver=$!
wait "$driver"
rc=$?
driver=""
exit $rc
