#!/usr/bin/env bash
# `make bench`: throughput, latency and threads of the real runtime, in two layouts, then one summary table.
#
#   (a) tom-bench            N members as threads of one process over loopback TCP; every N of BENCH_MEMBERS
#                            x every size of BENCH_SIZES, saturated (as fast as flow control allows) and
#                            paced (BENCH_RATE msgs/s per member)
#   (b) tom-member black box a tom-helper and N tom-member processes on 127.0.0.1 (tests/lab/blackbox.sh),
#                            every N of BENCH_MEMBERS, 64 B, saturated
#
# Each run prints its JSON line as it ends; at the end, one markdown table of all runs (msgs/s delivered
# per member, p50/p99 when paced, threads per member, the 1/N projection from the smallest N), and the
# scaling from the smallest to the largest N against the 1/N target (for tom-bench: the per-member figure
# at N=16 at least 3/16 of the one at N=3, same run, same size).
#
# Run:  make bench                 (builds release first; about 5 minutes on a 2-core machine)
#       BENCH_MESSAGES=20000 bash tests/lab/bench.sh
# Env:  message counts per member, one number for every N or one per N of BENCH_MEMBERS (in that order;
#       the last one serves the rest), because a saturated N=16 group delivers an order of magnitude less
#       per member than N=3 and would otherwise dominate the run time:
#         BENCH_MESSAGES           tom-bench saturated   (default "50000 50000 20000 5000")
#         BENCH_PACED_MESSAGES     tom-bench paced       (default "5000 5000 5000 2000")
#         BENCH_BLACKBOX_MESSAGES  black box saturated   (default "50000 20000 10000 2000")
#       BENCH_MEMBERS ("3 5 8 16"), BENCH_SIZES ("64 1024"), BENCH_RATE (1000 msgs/s per member),
#       SKIP="blackbox" or "tom-bench" to leave a layout out, BIN (default ${CARGO_TARGET_DIR:-target}/release),
#       OUT (default ${CARGO_TARGET_DIR:-target}/bench: the raw lines of each run, raw-<time>.txt).
# Exit status 0 only if every run delivered everything. The run in progress is stopped on exit (also on
# failure or Ctrl-C).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-target}
bin=${BIN:-$target/release}
members_list=${BENCH_MEMBERS:-3 5 8 16}
sizes=${BENCH_SIZES:-64 1024}
saturated_counts=${BENCH_MESSAGES:-50000 50000 20000 5000}
paced_counts=${BENCH_PACED_MESSAGES:-5000 5000 5000 2000}
blackbox_counts=${BENCH_BLACKBOX_MESSAGES:-50000 20000 10000 2000}
rate=${BENCH_RATE:-1000}
SKIP=${SKIP:-}
out=${OUT:-$target/bench}
mkdir -p "$out"
raw="$out/raw-$(date -u +%Y%m%d-%H%M%S).txt"
: >"$raw"

current="" # PID of the run in progress
cleanup() {
    if [ -n "$current" ]; then
        kill -TERM "$current" 2>/dev/null
        wait "$current" 2>/dev/null
    fi
}
trap cleanup EXIT
# A signal ends the script (through the EXIT trap) instead of resuming it after the cleanup.
trap 'exit 130' INT TERM

# count_for LIST INDEX: the INDEX-th (from 0) number of LIST, the last one past its end.
count_for() {
    local -a counts
    read -r -a counts <<<"$1"
    local i=$2
    [ "$i" -lt "${#counts[@]}" ] || i=$((${#counts[@]} - 1))
    echo "${counts[$i]}"
}

# measure SYSTEM MODE CMD...: runs CMD in the background (so a signal reaches the trap at once), prints
# its last stdout line and keeps it in the raw file as "SYSTEM MODE LINE" ("failed" when there is none).
failures=0
measure() {
    local system=$1 mode=$2 line rc
    shift 2
    "$@" >"$out/last.txt" &
    current=$!
    wait "$current"
    rc=$?
    current=""
    line=$(tail -n 1 "$out/last.txt")
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        failures=$((failures + 1))
        echo "bench: $system $mode failed (exit $rc): $*" >&2
    fi
    echo "${line:-failed}"
    echo "$system $mode ${line:-failed}" >>"$raw"
}

echo "bench: $(nproc) cores, $(uptime)" >&2
echo "bench: N in $members_list; tom-bench saturated $saturated_counts, paced $paced_counts at $rate/s;" \
    "black box $blackbox_counts (messages per member)" >&2
start=$SECONDS
index=0
for n in $members_list; do
    case " $SKIP " in *" tom-bench "*) ;; *)
        for size in $sizes; do
            measure tom-bench saturated "$bin/tom-bench" --members "$n" --size "$size" \
                --messages "$(count_for "$saturated_counts" $index)" --json
            measure tom-bench paced "$bin/tom-bench" --members "$n" --size "$size" \
                --messages "$(count_for "$paced_counts" $index)" --rate "$rate" --json
        done
        ;;
    esac
    case " $SKIP " in *" blackbox "*) ;; *)
        measure tom-member saturated env BIN="$bin" bash tests/lab/blackbox.sh "$n" 64 \
            "$(count_for "$blackbox_counts" $index)"
        ;;
    esac
    index=$((index + 1))
done
echo "bench: all runs took $((SECONDS - start)) s; raw lines in $raw" >&2

echo
python3 - "$raw" "$rate" <<'EOF'
import json, sys
raw, rate = sys.argv[1], int(sys.argv[2])
runs = []
for line in open(raw):
    system, mode, rest = line.rstrip("\n").split(" ", 2)
    try:
        data = json.loads(rest)
    except ValueError:
        data = {}
    runs.append((system, mode, data))
def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
def fmt(v):
    if v is None: return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"
def size_label(b):
    return f"{b // 1024} KiB" if b and b % 1024 == 0 else f"{b} B"
labels = {"tom-bench": "tom-bench (threads)", "tom-member": "tom-member black box (processes)"}
rows = []
for system, mode, d in runs:
    n, size = d.get("members"), d.get("size")
    rate_v = num(d.get("delivered_per_s_median"))
    if system == "tom-bench":
        threads = num(d.get("threads_mid_run"))
        per_member = threads / n if threads is not None and n else None
    else:
        per_member = num(d.get("threads_per_member_median"))
    ok = rate_v is not None and (system != "tom-member" or d.get("ok") is True)
    rows.append({"system": system, "mode": mode, "n": n, "size": size, "rate": rate_v if ok else None,
                 "p50": num(d.get("latency_p50_us")) if mode == "paced" else None,
                 "p99": num(d.get("latency_p99_us")) if mode == "paced" else None,
                 "threads": per_member, "ok": ok})
# One block per system, size and mode, N ascending: the runs went N by N, the table reads down a column.
order = {"tom-bench": 0, "tom-member": 1}
rows.sort(key=lambda r: (order.get(r["system"], 2), r["size"] or 0, r["mode"] != "saturated", r["n"] or 0))
ns = sorted({r["n"] for r in rows if r["n"]})
low, high = (ns[0], ns[-1]) if ns else (None, None)
def base(r):
    """The same system, size and mode at the smallest N, if it delivered."""
    for b in rows:
        if (b["system"], b["size"], b["mode"], b["n"]) == (r["system"], r["size"], r["mode"], low) and b["rate"]:
            return b["rate"]
    return None
paced = "1 msg/ms" if rate == 1000 else f"{rate} msgs/s"
print(f"Summary (msgs/s delivered per member, median over members; p50/p99 in µs, multicast to own delivery, "
      f"paced runs only; threads per member mid-run; the 1/N projection is the N={low} figure × {low}/N)")
print()
print(f"| system | N | size | mode | msgs/s per member | p50 µs | p99 µs | threads per member "
      f"| 1/N projection from N={low} | measured / projection |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    mode = "saturated" if r["mode"] == "saturated" else paced
    projection = ratio = "-"
    b = base(r)
    if r["mode"] == "saturated" and b and r["n"] != low:
        projection = fmt(b * low / r["n"])
        ratio = f"{r['rate'] / (b * low / r['n']):.2f}×" if r["rate"] else "-"
    figure = fmt(r["rate"]) if r["ok"] else "**failed**"
    print(f"| {labels.get(r['system'], r['system'])} | {r['n'] if r['n'] else '?'} | "
          f"{size_label(r['size']) if r['size'] else '?'} | {mode} | {figure} | {fmt(r['p50'])} | "
          f"{fmt(r['p99'])} | {fmt(r['threads'])} | {projection} | {ratio} |")
print()
if low is None or low == high:
    print("Scaling: needs two group sizes (BENCH_MEMBERS)")
    sys.exit(0)
print(f"Scaling, saturated, N={high} / N={low} per member (target for tom-bench: ≥ {low}/{high} = "
      f"{low / high:.3f}, i.e. per-member throughput falls no faster than 1/N)")
print()
print(f"| system | size | N={low} msgs/s | N={high} msgs/s | N={high} / N={low} | target | verdict |")
print("|---|---|---|---|---|---|---|")
for system in ("tom-bench", "tom-member"):
    for size in sorted({r["size"] for r in rows if r["system"] == system and r["size"]}):
        pick = lambda n: next((r["rate"] for r in rows if (r["system"], r["size"], r["mode"], r["n"]) ==
                               (system, size, "saturated", n)), None)
        a, b = pick(low), pick(high)
        ratio = b / a if a and b else None
        if system != "tom-bench":
            verdict = "no target"
        elif ratio is None:
            verdict = "not measured"
        else:
            verdict = "met" if ratio >= low / high else "NOT met"
        print(f"| {labels[system]} | {size_label(size)} | {fmt(a)} | {fmt(b)} | "
              f"{'-' if ratio is None else f'{ratio:.3f}'} | ≥ {low / high:.3f} | {verdict} |")
EOF
[ $failures -eq 0 ]
