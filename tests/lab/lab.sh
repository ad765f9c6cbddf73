#!/usr/bin/env bash
# `make lab N=4`: a tmux session with the helper and N interactive members on this machine. Type a line
# in any member's pane: every pane shows the group's total order. The PID of every process started here
# is recorded, so that `make stop` ends exactly these processes and nothing else.
set -euo pipefail

members=${N:-4}
port=${PORT:-9999}
bin=${BIN:-target/release}
dir=${LAB_DIR:-target/lab}
session=${SESSION:-tom-lab}
mkdir -p "$dir"
pids="$dir/pids"

helper_cmd="$bin/tom-helper --size $members --port $port --bind 127.0.0.1"
member_cmd="env RUST_LOG=${RUST_LOG:-warn} $bin/tom-member --helper 127.0.0.1:$port --host 127.0.0.1"
# COOKIE=path: the group's secret, for the helper and every member (README: "A group secret").
if [ -n "${COOKIE:-}" ]; then
    helper_cmd="$helper_cmd --cookie-file $COOKIE"
    member_cmd="$member_cmd --cookie-file $COOKIE"
fi

if ! command -v tmux >/dev/null 2>&1; then
    cat >&2 <<TXT
tmux is not installed (Debian: apt-get install tmux). Run the lab by hand instead, each in its own
terminal, from $(pwd):
  $helper_cmd
$(for i in $(seq 1 "$members"); do echo "  $member_cmd"; done)
Type lines into any member; each prints JOINED, VIEW and DELIVER lines. Ctrl-C ends a process (to the
group, a crash); restart it with: $member_cmd --rejoin RANK
TXT
    exit 1
fi
if tmux has-session -t "$session" 2>/dev/null; then
    echo "a lab session '$session' is already running: tmux attach -t $session (or make stop)" >&2
    exit 1
fi

# Each pane records its shell's PID, then execs the program in its place: the recorded PID is the program's.
record="echo \$\$ >>'$pids'; exec"
tmux new-session -d -s "$session" -x 200 -y 50 "$record $helper_cmd"
for i in $(seq 1 "$members"); do
    tmux split-window -t "$session" "$record $member_cmd"
    tmux select-layout -t "$session" tiled >/dev/null
done
tmux set-option -t "$session" remain-on-exit on >/dev/null
echo "lab running: helper on 127.0.0.1:$port and $members members in tmux session '$session'"
echo "  attach: tmux attach -t $session    (detach: Ctrl-b d)    stop everything: make stop"
if [ -t 0 ] && [ -t 1 ] && [ -z "${TMUX:-}" ]; then
    exec tmux attach -t "$session"
fi
