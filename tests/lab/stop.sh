#!/usr/bin/env bash
# `make stop`: ends exactly the processes that `make lab` (and `make run`) recorded, and the lab's tmux
# session. A recorded PID is only signalled while it still runs a tom program: a PID the system has since
# given to another process is left alone.
set -uo pipefail

dir=${LAB_DIR:-target/lab}
session=${SESSION:-tom-lab}
stopped=0
if [ -f "$dir/pids" ]; then
    while read -r pid; do
        [ -n "$pid" ] || continue
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE '(^|/)tom-(helper|member) '; then
            kill "$pid" 2>/dev/null && stopped=$((stopped + 1))
        fi
    done <"$dir/pids"
    rm -f "$dir/pids"
fi
if command -v tmux >/dev/null 2>&1 && tmux has-session -t "$session" 2>/dev/null; then
    tmux kill-session -t "$session"
fi
echo "stopped $stopped recorded process(es)"
