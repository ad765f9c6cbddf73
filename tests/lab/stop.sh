#!/usr/bin/env bash
# `make stop`: ends exactly the processes that `make lab` recorded — the helper, every member, every
# rejoin started in a pane or by tests/lab/rejoin.sh — and the lab's tmux session. Processes are found
# by their recorded PID and start time (tests/lab/common.sh), never by name: a PID the system has since
# given to another process is left alone. The count is of the recorded processes that were running and
# are now gone; a process that does not end is named, and the exit status is 1.
set -uo pipefail
# shellcheck source=tests/lab/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

session=${SESSION:-tom-lab}
socket=${TMUX_SOCKET:-}
if [ -f "$dir/lab.env" ]; then
    # shellcheck disable=SC1091
    source "$dir/lab.env"
fi

# running: the records ("PID START" lines) on stdin whose processes still run.
running() {
    local pid start
    while read -r pid start; do
        [ -n "$pid" ] && [ -n "${start:-}" ] || continue
        if alive "$pid" "$start"; then echo "$pid $start"; fi
    done
}

# recorded FILE: the records of FILE whose processes still run.
recorded() {
    if [ -f "$1" ]; then running <"$1" | sort -u; fi
}

# end LIST: signals the processes of LIST (SIGTERM; SIGCONT for a paused one, which would not end
# otherwise; SIGKILL after 5 s) and prints how many of them have ended.
end() {
    local list=$1 pid start ended=0
    [ -n "$list" ] || { echo 0; return; }
    while read -r pid start; do kill -TERM "$pid" 2>/dev/null; kill -CONT "$pid" 2>/dev/null; done <<<"$list"
    for _ in $(seq 50); do
        [ -n "$(running <<<"$list")" ] || break
        sleep 0.1
    done
    while read -r pid start; do kill -KILL "$pid" 2>/dev/null; done < <(running <<<"$list")
    for _ in $(seq 20); do
        [ -n "$(running <<<"$list")" ] || break
        sleep 0.1
    done
    while read -r pid start; do
        if alive "$pid" "$start"; then
            echo "process $pid did not end" >&2
        else
            ended=$((ended + 1))
        fi
    done <<<"$list"
    echo "$ended"
}

# Both lists first: a member in a pane may end on its own once its pane's shell has gone.
programs=$(recorded "$dir/pids")
panes=$(recorded "$dir/panes")
# The panes' shells first, so that none offers a rejoin while its member is being stopped.
end "$panes" >/dev/null
stopped=$(end "$programs")
left=$([ -f "$dir/pids" ] && running <"$dir/pids")
if [ -z "$left" ]; then
    rm -f "$dir/pids" "$dir/panes"
fi
if command -v tmux >/dev/null 2>&1 && lab_tmux has-session -t "$session" 2>/dev/null; then
    lab_tmux kill-session -t "$session"
fi
echo "stopped $stopped recorded process(es)"
if [ -n "$left" ]; then
    echo "still running: $(echo "$left" | cut -d' ' -f1 | tr '\n' ' ')(records kept in $dir/pids)" >&2
    exit 1
fi
