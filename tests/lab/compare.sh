#!/usr/bin/env bash
# `make compare` (issue 8): tom side by side with two real total-order peers on this machine, for the
# same group size, payload size and message count.
#
#   (a) tom-bench --json             N members as threads of one process, real loopback TCP
#   (b) tom-member, black box        tests/lab/blackbox.sh (shared with `make bench`): tom-helper + N
#                                    tom-member processes on 127.0.0.1; every member's stdin gets MESSAGES
#                                    pre-generated SIZE-byte lines written at once; per member, delivered
#                                    msgs/s = N*MESSAGES / (its last DELIVER line read - first line
#                                    written); median over members (+ equal-order check by hashing)
#   (c) JGroups 2.12 SEQUENCER       $ANCHORS/jgroups/run.sh (throughput) and --latency (BUNDLING=false)
#   (d) Corosync 3 CPG (agreed)      $ANCHORS/corosync/setup.sh once, run.sh per round, teardown.sh at exit
#                                    (root only; 3 nodes only)
#   (e) the loopback floor           $ANCHORS/loopback (built with rustc into the target directory): 64-byte
#                                    ping-pong round trip over loopback TCP, and streaming frames/s with one
#                                    write per frame, 16 and 256 per write; what the machine allows
# Throughput: every member sends MESSAGES as fast as it may. Latency: LAT_MESSAGES per member, one every
# 1 ms per member (JGroups and Corosync: own send -> own delivery; tom-bench: multicast() -> own delivery).
# Every system runs ROUNDS times, interleaved; the table shows each round and the median, then the targets
# (met or NOT met): tom-bench saturated >= 1,000,000 msgs/s per member; black box >= 10x JGroups and >= 4x
# Corosync (throughput); tom-bench paced p50 <= 4x and p99 <= 20x the loopback round-trip p50, and its p50
# < 1/3 of Corosync's.
#
# Run:  make compare            (builds release first)
#       MEMBERS=3 SIZE=64 MESSAGES=100000 LAT_MESSAGES=5000 ROUNDS=3 bash tests/lab/compare.sh
# Env:  ANCHORS (default: <repo>/../shared/anchors), SKIP="jgroups corosync loopback" to leave peers out,
#       OUT (default ${CARGO_TARGET_DIR:-target}/compare), RUSTC (rustc). Prints the raw JSON lines, then
#       markdown tables: the figures, the loopback floor, the ratios tom/peer, the targets.
# A peer that cannot run (package missing, not root, N != 3 for Corosync) is reported in the tables.
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
# Where cargo put the binaries: CARGO_TARGET_DIR when it is set, as for cargo itself.
target=${CARGO_TARGET_DIR:-target}
bin=$target/release
out=${OUT:-$target/compare}
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
# exec: the step's PID is then blackbox.sh itself, whose trap stops its driver when the step is stopped.
blackbox() {
    BIN="$bin" exec bash tests/lab/blackbox.sh "$N" "$SIZE" "$M"
}

# loopback ROUND: one run of the loopback floor prints one JSON line per probe; each is recorded as its own
# kind (rtt64, stream64-1, stream64-16, stream64-256).
loopback_floor="$target/loopback-floor"
loopback() {
    local line kind
    : >"$last"
    step "$loopback_floor" >"$last" 2>>"$out/loopback.log"
    while IFS= read -r line; do
        kind=$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["probe"] + ("-%s" % d["batch"] if "batch" in d else ""))' \
            "$line" 2>/dev/null) || kind=unparsed
        record loopback "$1" "$kind" "$line"
    done <"$last"
}

# --- what can run ---
have_jgroups=yes have_corosync=yes have_loopback=yes
case " $SKIP " in *" jgroups "*) have_jgroups=no; unavailable jgroups "skipped (SKIP)";; esac
case " $SKIP " in *" corosync "*) have_corosync=no; unavailable corosync "skipped (SKIP)";; esac
case " $SKIP " in *" loopback "*) have_loopback=no; unavailable loopback "skipped (SKIP)";; esac
if [ $have_loopback = yes ]; then
    # rustc on the one std-only file rather than cargo on its manifest: cargo would write a Cargo.lock
    # into the anchors' directory, which may be read-only and is not ours to change.
    if [ ! -f "$ANCHORS/loopback/src/main.rs" ]; then
        have_loopback=no; unavailable loopback "no $ANCHORS/loopback/src/main.rs"
    elif ! "${RUSTC:-rustc}" --edition 2021 -C opt-level=3 -o "$loopback_floor" "$ANCHORS/loopback/src/main.rs" >&2; then
        have_loopback=no; unavailable loopback "it did not build (rustc)"
    fi
fi
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
    if [ $have_loopback = yes ]; then
        echo "compare: round $r: loopback floor" >&2
        loopback "$r"
    fi
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
names = dict(systems, loopback="loopback floor")
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
med = lambda xs: statistics.median(xs) if xs else None
unavailable = {r["system"]: r["reason"] for r in rows if r["kind"] == "unavailable"}
summary = {}
print(f"N={n}, {size} B, throughput {m} msgs/member as fast as allowed; latency {lat_m} msgs/member at 1 msg/ms")
print()
print("| system | delivered msgs/s per member (rounds) | median | lat p50 µs | lat p99 µs | checks |")
print("|---|---|---|---|---|---|")
for key, label in systems:
    if key in unavailable:
        print(f"| {label} | not run: {unavailable[key]} | - | - | - | - |"); continue
    tp, p50, p99, oks = [], [], [], []
    for r in rows:
        if r["system"] != key: continue
        t, a, b, ok = extract(r)
        if t is not None: tp.append(t)
        if a is not None: p50.append(a)
        if b is not None: p99.append(b)
        oks.append(ok)
    summary[key] = (med(tp), med(p50), med(p99))
    checks = "all ok" if oks and all(oks) else f"{oks.count(False)} result(s) failed or unchecked"
    print(f"| {label} | {', '.join(fmt(x) for x in tp) or '-'} | {fmt(med(tp))} | {fmt(med(p50))} | "
          f"{fmt(med(p99))} | {checks} |")
print()

# The loopback floor: what the machine itself allows for 64-byte frames, measured between the rounds.
floor = {}
if "loopback" in unavailable:
    print(f"Loopback floor: not run: {unavailable['loopback']}")
else:
    probes = [("rtt64", "p50_us", "ping-pong round trip p50, µs"), ("rtt64", "p99_us", "ping-pong round trip p99, µs"),
              ("stream64-1", "frames_per_s", "streaming frames/s, one write per frame"),
              ("stream64-16", "frames_per_s", "streaming frames/s, 16 frames per write"),
              ("stream64-256", "frames_per_s", "streaming frames/s, 256 frames per write")]
    print("Loopback floor, same run (64-byte frames over loopback TCP)")
    print()
    print("| probe | rounds | median |")
    print("|---|---|---|")
    for kind, field, label in probes:
        xs = [num(r["result"].get(field)) for r in rows if r["system"] == "loopback" and r["kind"] == kind]
        xs = [x for x in xs if x is not None]
        floor[(kind, field)] = med(xs)
        print(f"| {label} | {', '.join(fmt(x) for x in xs) or '-'} | {fmt(med(xs))} |")
print()

print("Ratios tom/peer (throughput: higher = tom faster; latency: lower = tom faster)")
print()
print("| tom / peer | throughput | latency p50 | latency p99 |")
print("|---|---|---|---|")
if "jgroups" not in summary and "corosync" not in summary:
    print("| (no peer ran) | - | - | - |")
for mine in ("tom-bench", "tom-member"):
    for peer in ("jgroups", "corosync"):
        if mine not in summary or peer not in summary: continue
        a, b = summary[mine], summary[peer]
        cell = lambda x, y: f"{x / y:.2f}×" if x and y else "-"
        print(f"| {mine} / {peer} | {cell(a[0], b[0])} | {cell(a[1], b[1])} | {cell(a[2], b[2])} |")
print()

def figure(system, index):
    """The median figure of a system, or why there is none."""
    if system in unavailable:
        return None, f"{names[system]} not run: {unavailable[system]}"
    if system == "loopback":
        v = floor.get(("rtt64", "p50_us"))
    else:
        v = summary.get(system, (None, None, None))[index]
    return v, None if v is not None else f"no {names[system]} figure (see the raw lines)"
def ratio_text(x):
    return f"{x:.3f}×" if x < 1 else f"{x:.2f}×"
targets = [
    # (target, numerator (system, index, label), denominator or a constant, test, bound text)
    (f"tom-bench saturated msgs/s per member (N={n}, {size} B) vs 1,000,000", ("tom-bench", 0, "tom-bench"),
     1_000_000, lambda r: r >= 1, "≥ 1×"),
    ("black box / JGroups, throughput", ("tom-member", 0, "black box"), ("jgroups", 0, "JGroups"),
     lambda r: r >= 10, "≥ 10×"),
    ("black box / Corosync, throughput", ("tom-member", 0, "black box"), ("corosync", 0, "Corosync"),
     lambda r: r >= 4, "≥ 4×"),
    ("tom-bench paced p50 / loopback round-trip p50", ("tom-bench", 1, "tom-bench p50 µs"), ("loopback", 1, "round trip p50 µs"),
     lambda r: r <= 4, "≤ 4×"),
    ("tom-bench paced p99 / loopback round-trip p50", ("tom-bench", 2, "tom-bench p99 µs"), ("loopback", 1, "round trip p50 µs"),
     lambda r: r <= 20, "≤ 20×"),
    ("tom-bench paced p50 / Corosync p50", ("tom-bench", 1, "tom-bench p50 µs"), ("corosync", 1, "Corosync p50 µs"),
     lambda r: r < 1 / 3, "< 1/3 (0.333×)"),
]
print("Targets (medians of this run)")
print()
print("| target | figures | ratio | bound | verdict |")
print("|---|---|---|---|---|")
for name, (sa, ia, la), below, test, bound in targets:
    a, why = figure(sa, ia)
    if isinstance(below, tuple):
        b, why_b = figure(below[0], below[1])
        why = why or why_b
        lb = below[2]
    else:
        b, lb = below, "target"
    if why:
        print(f"| {name} | - | - | {bound} | not measured: {why} |"); continue
    r = a / b
    print(f"| {name} | {la} {fmt(a)} / {lb} {fmt(b)} | {ratio_text(r)} | {bound} | {'met' if test(r) else 'NOT met'} |")
EOF
