#!/usr/bin/env bash
# `make compare` (issue 8): tom side by side with two real total-order peers on this machine, for the
# same group size, payload size and message count.
#
#   (a) tom-bench --json             N members as threads of one process, real loopback TCP
#   (b) tom-member, black box        tom-helper + N tom-member processes on 127.0.0.1; every member's stdin
#                                    gets MESSAGES pre-generated SIZE-byte lines written at once; per member,
#                                    delivered msgs/s = N*MESSAGES / (its last DELIVER line read - first
#                                    line written); median over members (+ equal-order check by hashing)
#   (c) JGroups 2.12 SEQUENCER       $ANCHORS/jgroups/run.sh (throughput) and --latency (BUNDLING=false)
#   (d) Corosync 3 CPG (agreed)      $ANCHORS/corosync/setup.sh once, run.sh per round, teardown.sh at exit
#                                    (root only; 3 nodes only)
# Throughput: every member sends MESSAGES as fast as it may. Latency: LAT_MESSAGES per member, one every
# 1 ms per member (JGroups and Corosync: own send -> own delivery; tom-bench: multicast() -> own delivery).
# Every system runs ROUNDS times, interleaved; the table shows each round and the median.
#
# Run:  make compare            (builds release first)
#       MEMBERS=3 SIZE=64 MESSAGES=100000 LAT_MESSAGES=5000 ROUNDS=3 bash tests/lab/compare.sh
# Env:  ANCHORS (default: <repo>/../shared/anchors), SKIP="jgroups corosync" to leave peers out,
#       OUT (default target/compare). Prints the raw JSON lines, then one table with the ratios tom/peer.
# A peer that cannot run (package missing, not root, N != 3 for Corosync) is reported in the table.
# Everything started is stopped on exit (also on failure or Ctrl-C); the Corosync cluster is torn down
# if this script set it up.
set -uo pipefail

root=$(git rev-parse --show-toplevel) || exit 1
cd "$root"
ANCHORS=${ANCHORS:-$root/../shared/anchors}
N=${MEMBERS:-3}
SIZE=${SIZE:-64}
M=${MESSAGES:-100000}
LAT_M=${LAT_MESSAGES:-5000}
ROUNDS=${ROUNDS:-3}
SKIP=${SKIP:-}
bin=target/release
out=${OUT:-target/compare}
mkdir -p "$out"
raw="$out/raw-$(date -u +%Y%m%d-%H%M%S).jsonl"
: >"$raw"

exec {err}>&2       # the script's own stderr (the trap may fire inside a step whose stderr is a log)
current=""          # PID of the step running in the background right now
corosync_setup=no   # yes once this script ran setup.sh (then teardown.sh runs at exit)
cleanup() {
    if [ -n "$current" ]; then
        kill -TERM "$current" 2>/dev/null
        wait "$current" 2>/dev/null
    fi
    if [ "$corosync_setup" = yes ]; then
        echo "compare: corosync teardown" >&"$err"
        "$ANCHORS/corosync/teardown.sh" >&"$err" 2>&"$err" || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# step CMD...: runs CMD in the background (so a signal reaches the trap at once) and waits for it.
step() {
    "$@" &
    current=$!
    wait "$current"
    local rc=$?
    current=""
    return $rc
}

# record SYSTEM ROUND KIND JSON-LINE: one tagged line in the raw file (KIND = tput | lat).
record() {
    python3 - "$1" "$2" "$3" "$4" >>"$raw" <<'EOF'
import json, sys
system, rnd, kind, line = sys.argv[1:]
try:
    data = json.loads(line)
except Exception:
    data = {"unparsed": line}
print(json.dumps({"system": system, "round": int(rnd), "kind": kind, "result": data}))
EOF
}

# unavailable SYSTEM REASON: marks a peer as not run.
unavailable() {
    python3 -c 'import json,sys; print(json.dumps({"system":sys.argv[1],"round":0,"kind":"unavailable","reason":sys.argv[2]}))' \
        "$1" "$2" >>"$raw"
    echo "compare: $1 not run: $2" >&2
}

# The black-box path: helper + N tom-member processes driven through their stdin/stdout.
blackbox() {
    exec python3 - "$bin" "$N" "$SIZE" "$M" <<'EOF'
import hashlib, json, os, signal, socket, statistics, subprocess, sys, threading, time
bindir, n, size, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
procs = []
def stop(*_):
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try: p.wait(timeout=5)
        except Exception: pass
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
result = {"system": "tom-member", "members": n, "size": size, "messages_per_member": m}
try:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    errlog = open(os.devnull, "wb")
    procs.append(subprocess.Popen([f"{bindir}/tom-helper", "--size", str(n), "--port", str(port),
                                   "--bind", "127.0.0.1"], stderr=errlog))
    members = []
    for _ in range(n):
        p = subprocess.Popen([f"{bindir}/tom-member", "--helper", f"127.0.0.1:{port}", "--host", "127.0.0.1",
                              "--port", str(port + 1)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=errlog, bufsize=0)
        procs.append(p); members.append(p)
    # Wait for JOINED on every member (reading byte-wise up to the end of that line).
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
    t0 = [0.0]
    done = [None] * n; counts = [0] * n; hashes = [None] * n
    def writer(idx):
        fd = members[idx].stdin.fileno(); view = memoryview(inputs[idx]); go.wait()
        while view:
            view = view[os.write(fd, view):]
    def reader(idx):
        fd = members[idx].stdout.fileno(); h = hashlib.sha256(); c = 0; pending = rest[idx]
        while True:
            if pending:
                h.update(pending); c += pending.count(b"DELIVER ")
                if c >= total:
                    done[idx] = time.monotonic(); break
            pending = os.read(fd, 1 << 20)
            if not pending: break
        counts[idx] = c; hashes[idx] = h.hexdigest()[:16]
    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(n)]
    threads += [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(n)]
    for t in threads: t.start()
    time.sleep(0.2)
    t0[0] = time.monotonic(); go.set()
    limit = float(os.environ.get("BLACKBOX_TIME_LIMIT", "300"))
    for t in threads[n:]:
        t.join(timeout=max(0.0, t0[0] + limit - time.monotonic()))
    rates = [round(total / (d - t0[0])) if d else None for d in done]
    ok = all(rates)
    result.update({"per_member_msgs_per_s": rates,
                   "delivered_per_s_median": statistics.median(rates) if ok else None,
                   "secs": [round(d - t0[0], 3) if d else None for d in done],
                   "delivered": counts, "order_hashes": hashes,
                   "order_equal": ok and len(set(hashes)) == 1, "ok": ok})
except Exception as e:
    result.update({"ok": False, "error": str(e)})
finally:
    stop()
print(json.dumps(result), flush=True)
EOF
}

# --- what can run ---
have_jgroups=yes have_corosync=yes
case " $SKIP " in *" jgroups "*) have_jgroups=no; unavailable jgroups "skipped (SKIP)";; esac
case " $SKIP " in *" corosync "*) have_corosync=no; unavailable corosync "skipped (SKIP)";; esac
if [ $have_jgroups = yes ]; then
    if [ ! -x "$ANCHORS/jgroups/run.sh" ]; then have_jgroups=no; unavailable jgroups "no $ANCHORS/jgroups/run.sh"
    elif ! command -v javac >/dev/null; then have_jgroups=no; unavailable jgroups "javac missing (install a JDK)"
    elif ! dpkg -L libjgroups-java >/dev/null 2>&1; then have_jgroups=no; unavailable jgroups "libjgroups-java not installed"
    fi
fi
if [ $have_corosync = yes ]; then
    if [ ! -x "$ANCHORS/corosync/run.sh" ]; then have_corosync=no; unavailable corosync "no $ANCHORS/corosync/run.sh"
    elif [ "$N" != 3 ]; then have_corosync=no; unavailable corosync "the anchor runs 3 nodes only (N=$N)"
    elif [ "$(id -u)" != 0 ]; then have_corosync=no; unavailable corosync "needs root (network namespaces)"
    elif ! command -v corosync >/dev/null || [ ! -f /usr/include/corosync/cpg.h ]; then
        have_corosync=no; unavailable corosync "corosync / libcpg-dev not installed"
    else
        cs_state="${ANCHOR_WORK:-${TMPDIR:-/tmp}/tom-anchors}/corosync/state"
        if [ -e "$cs_state/created" ]; then
            echo "compare: a corosync cluster is already set up ($cs_state); using it, not tearing it down" >&2
        else
            echo "compare: corosync setup" >&2
            corosync_setup=yes   # teardown undoes whatever setup recorded, even a partial setup
            if ! step "$ANCHORS/corosync/setup.sh" >&2; then
                have_corosync=no; unavailable corosync "setup.sh failed"
            fi
        fi
    fi
fi

echo "compare: N=$N size=$SIZE messages/member=$M latency messages/member=$LAT_M at 1/ms, rounds=$ROUNDS" >&2
echo "compare: $(nproc) cores, $(uptime)" >&2
last="$out/last.json"
# run SYSTEM ROUND KIND CMD...: one measurement; its last stdout line is recorded.
run() {
    local system=$1 rnd=$2 kind=$3; shift 3
    : >"$last"
    step "$@" >"$last" 2>>"$out/$system.log"
    record "$system" "$rnd" "$kind" "$(tail -n 1 "$last")"
}
for r in $(seq 1 "$ROUNDS"); do
    echo "compare: round $r: tom-bench" >&2
    run tom-bench "$r" tput "$bin/tom-bench" --members "$N" --size "$SIZE" --messages "$M" --json
    run tom-bench "$r" lat "$bin/tom-bench" --members "$N" --size "$SIZE" --messages "$LAT_M" --rate 1000 --json
    echo "compare: round $r: tom-member black box" >&2
    run tom-member "$r" tput blackbox
    if [ $have_jgroups = yes ]; then
        echo "compare: round $r: jgroups" >&2
        run jgroups "$r" tput "$ANCHORS/jgroups/run.sh" "$N" "$M" "$SIZE"
        run jgroups "$r" lat env INTERVAL_US=1000 BUNDLING=false "$ANCHORS/jgroups/run.sh" --latency "$N" "$LAT_M" "$SIZE"
    fi
    if [ $have_corosync = yes ]; then
        echo "compare: round $r: corosync" >&2
        run corosync "$r" both env TPUT_MSGS="$M" LAT_MSGS="$LAT_M" LAT_INTERVAL_US=1000 MSG_BYTES="$SIZE" \
            "$ANCHORS/corosync/run.sh"
    fi
done

echo
echo "raw JSON lines ($raw):"
cat "$raw"
echo
python3 - "$raw" "$N" "$SIZE" "$M" "$LAT_M" <<'EOF'
import json, statistics, sys
raw, n, size, m, lat_m = sys.argv[1], *sys.argv[2:]
rows = [json.loads(l) for l in open(raw) if l.strip()]
systems = [("tom-bench", "tom-bench (threads, one process)"), ("tom-member", "tom-member black box (stdin/stdout)"),
           ("jgroups", "JGroups 2.12 SEQUENCER"), ("corosync", "Corosync 3 CPG agreed")]
def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
def extract(row):
    """(throughput, lat_p50, lat_p99, ok) from one tagged result."""
    s, k, d = row["system"], row["kind"], row.get("result", {})
    if s == "tom-bench" and k == "tput": return num(d.get("delivered_per_s_median")), None, None, True
    if s == "tom-bench" and k == "lat": return None, num(d.get("latency_p50_us")), num(d.get("latency_p99_us")), True
    if s == "tom-member": return num(d.get("delivered_per_s_median")), None, None, bool(d.get("order_equal"))
    if s == "jgroups" and k == "tput": return num(d.get("median_msgs_per_s")), None, None, bool(d.get("order_equal"))
    if s == "jgroups" and k == "lat": return None, num(d.get("p50_us")), num(d.get("p99_us")), bool(d.get("order_equal"))
    if s == "corosync": return (num(d.get("tput_delivered_per_s_median")), num(d.get("lat_p50_us")),
                                num(d.get("lat_p99_us")), d.get("ok") is True)
    return None, None, None, False
def fmt(v, unit=""):
    if v is None: return "-"
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.1f}{unit}"
summary = {}
print(f"N={n}, {size} B, throughput {m} msgs/member as fast as allowed; latency {lat_m} msgs/member at 1 msg/ms")
print(f"{'system':38} {'delivered msgs/s per member (rounds)':44} {'median':>10} {'lat p50 µs':>11} {'lat p99 µs':>11}  checks")
for key, label in systems:
    mine = [r for r in rows if r["system"] == key]
    gone = [r for r in mine if r["kind"] == "unavailable"]
    if gone:
        print(f"{label:38} not run: {gone[0]['reason']}"); continue
    tp, p50, p99, oks = [], [], [], []
    for r in mine:
        t, a, b, ok = extract(r)
        if t is not None: tp.append(t)
        if a is not None: p50.append(a)
        if b is not None: p99.append(b)
        oks.append(ok)
    med = lambda xs: statistics.median(xs) if xs else None
    summary[key] = (med(tp), med(p50), med(p99))
    checks = "all ok" if oks and all(oks) else f"{oks.count(False)} result(s) failed or unchecked"
    print(f"{label:38} {', '.join(fmt(x) for x in tp) or '-':44} {fmt(med(tp)):>10} {fmt(med(p50)):>11} "
          f"{fmt(med(p99)):>11}  {checks}")
print()
print("ratios tom/peer (throughput: higher = tom faster; latency: lower = tom faster)")
for mine in ("tom-bench", "tom-member"):
    for peer in ("jgroups", "corosync"):
        if mine not in summary or peer not in summary: continue
        a, b = summary[mine], summary[peer]
        parts = []
        if a[0] and b[0]: parts.append(f"throughput {a[0] / b[0]:.2f}x")
        if a[1] and b[1]: parts.append(f"latency p50 {a[1] / b[1]:.2f}x")
        if a[2] and b[2]: parts.append(f"p99 {a[2] / b[2]:.2f}x")
        print(f"  {mine:10} / {peer:9} " + (", ".join(parts) if parts else "-"))
EOF
