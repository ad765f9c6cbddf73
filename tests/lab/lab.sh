#!/usr/bin/env bash
# `make lab N=4`: a tmux session with the helper and N interactive members on this machine. Type a line
# in any member's pane: every pane shows the group's total order, and the members log at info level, so
# each pane shows the port its member listens on (for `tom-member --status`). A member's pane outlives
# it: it says why the member ended and offers to rejoin it (tests/lab/pane.sh). Every program started
# here, by a pane or by the rejoin command printed below, is recorded by PID (tests/lab/common.sh), so
# that `make stop` ends exactly these processes and nothing else.
#
# Settings: N members, PORT (the helper's), MEMBER_PORT (the members' first port), COOKIE (a secret file), BIN (the programs' folder), RUST_LOG,
# LAB_DIR (records and logs), SESSION (tmux session name), TMUX_SOCKET (a tmux server of its own, -L).
set -euo pipefail
# shellcheck source=tests/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

members=${N:-4}
port=${PORT:-9999}
member_port=${MEMBER_PORT:-10000}
bin=$(cd "${BIN:-target/release}" && pwd)
session=${SESSION:-tom-lab}
socket=${TMUX_SOCKET:-}
log=${RUST_LOG:-info}
cookie=""
# COOKIE=path: the group's secret, for the helper and every member (README: "A group secret").
if [ -n "${COOKIE:-}" ]; then
    cookie=$(cd "$(dirname "$COOKIE")" && pwd)/$(basename "$COOKIE")
fi

have_tmux=yes
command -v tmux >/dev/null 2>&1 || have_tmux=no
if [ $have_tmux = yes ] && lab_tmux has-session -t "$session" 2>/dev/null; then
    echo "a lab session '$session' is already running: tmux attach -t $session (or make stop)" >&2
    exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -f "$dir"/member*.out "$dir"/member*.log "$dir"/member*.pid "$dir"/member*.pane
{
    printf 'members=%q\nport=%q\nmember_port=%q\nbin=%q\ncookie=%q\nlog=%q\nsession=%q\nsocket=%q\n' \
        "$members" "$port" "$member_port" "$bin" "$cookie" "$log" "$session" "$socket"
} >"$dir/lab.env"
pane="LAB_DIR=$(printf %q "$dir") exec bash $(printf %q "$lab_root/tests/lab/pane.sh")"
rejoin="bash tests/lab/rejoin.sh RANK"
if [ "$dir" != "$lab_root/target/lab" ]; then rejoin="LAB_DIR=$(printf %q "$dir") $rejoin"; fi

if [ $have_tmux = no ]; then
    by_hand="bash tests/lab/pane.sh"
    if [ -n "${LAB_DIR:-}" ]; then by_hand="LAB_DIR=$(printf %q "$dir") $by_hand"; fi
    cat >&2 <<TXT
tmux is not installed (Debian: apt-get install tmux). Run the lab by hand instead, each in its own
terminal, from $lab_root:
  $by_hand helper
$(for i in $(seq 1 "$members"); do echo "  $by_hand member $i"; done)
Type lines into any member; each prints JOINED, VIEW and DELIVER lines. Ctrl-C ends a member (to the
group, a crash); its terminal then offers to rejoin it, or from any terminal: $rejoin
make stop ends every process these commands started.
TXT
    exit 1
fi

lab_tmux new-session -d -s "$session" -x 200 -y 50 -c "$lab_root" "$pane helper"
# A pane that ends stays on screen with its last lines (the helper's, or a member pane closed with q).
lab_tmux set-option -t "$session" remain-on-exit on >/dev/null
for i in $(seq 1 "$members"); do
    lab_tmux split-window -t "$session" -c "$lab_root" "$pane member $i"
    lab_tmux select-layout -t "$session" tiled >/dev/null
done
echo "lab running: helper on 127.0.0.1:$port and $members members in tmux session '$session'"
echo "  attach: tmux ${socket:+-L $socket }attach -t $session    (detach: Ctrl-b d)    stop everything: make stop"
echo "  a member that ended: press Enter in its pane to rejoin it, or from another terminal: $rejoin"
if [ -t 0 ] && [ -t 1 ] && [ -z "${TMUX:-}" ]; then
    exec tmux ${socket:+-L "$socket"} attach -t "$session"
fi
