#!/usr/bin/env bash
# `make run`: a helper and three members on 127.0.0.1, each multicasting a few lines at once; prints
# every member's delivered sequence side by side and whether they agree. Exits non-zero if they do not.
# Everything it starts is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

members=${MEMBERS:-3}
per_member=${MESSAGES:-5}
bin=${BIN:-target/release}
out=${OUT:-target/run}
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.out "$out"/*.in "$out"/*.trace

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# A helper port that is free right now (the helper itself refuses to start on a taken one).
helper_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
first_port=$((helper_port + 1))

"$bin/tom-helper" --size "$members" --port "$helper_port" --bind 127.0.0.1 2>"$out/helper.log" &
pids+=($!)

for i in $(seq 1 "$members"); do
    mkfifo "$out/member$i.in"
    # Keep each member's stdin open until the end (the member keeps running after stdin EOF anyway).
    sleep 1000 >"$out/member$i.in" &
    pids+=($!)
    "$bin/tom-member" --helper "127.0.0.1:$helper_port" --host 127.0.0.1 --port "$first_port" --trace "$out/member$i.trace" \
        <"$out/member$i.in" >"$out/member$i.out" 2>"$out/member$i.log" &
    pids+=($!)
    exec {fd}>"$out/member$i.in"
    eval "fd_$i=$fd"
done

wait_for() { # wait_for FILE PATTERN COUNT SECONDS
    local deadline=$((SECONDS + $4))
    while [ "$(grep -c "$2" "$1" 2>/dev/null || true)" -lt "$3" ]; do
        if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for $3 × '$2' in $1" >&2; return 1; fi
        sleep 0.1
    done
}

for i in $(seq 1 "$members"); do
    wait_for "$out/member$i.out" '^JOINED' 1 20
    eval "rank_$i=$(awk '/^JOINED/ { print $2; exit }' "$out/member$i.out")"
done
echo "group formed: $members members"


# Everyone multicasts at once.
for i in $(seq 1 "$members"); do
    eval "fd=\$fd_$i rank=\$rank_$i"
    for k in $(seq 1 "$per_member"); do echo "hello $k from rank $rank" >&"$fd"; done
done
total=$((members * per_member))
for i in $(seq 1 "$members"); do wait_for "$out/member$i.out" '^DELIVER' "$total" 30; done

echo
for i in $(seq 1 "$members"); do grep '^DELIVER' "$out/member$i.out" | cut -d' ' -f2- >"$out/member$i.seq"; done
header=""
for i in $(seq 1 "$members"); do eval "rank=\$rank_$i"; header="$header$(printf '%-34s' "rank $rank: origin lamport payload")"; done
echo "$header"
paste -d'|' $(for i in $(seq 1 "$members"); do echo "$out/member$i.seq"; done) | awk -F'|' '{ line=""; for (i=1;i<=NF;i++) line=line sprintf("%-34s", $i); print line }'
echo
agree=yes
for i in $(seq 2 "$members"); do cmp -s "$out/member1.seq" "$out/member$i.seq" || agree=no; done
if [ "$agree" = yes ]; then
    echo "all $members members delivered the same $total messages in the same order"
else
    echo "DISAGREEMENT: the delivered sequences differ (logs in $out/)" >&2
    exit 1
fi
