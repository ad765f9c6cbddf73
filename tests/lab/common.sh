# Sourced by the lab scripts (lab.sh, pane.sh, rejoin.sh, stop.sh): where the lab keeps its records, how
# a process is recorded for `make stop`, and the member command.
#
# The lab directory (LAB_DIR, default target/lab) holds:
#   lab.env          the lab's settings, written by lab.sh: members, port, member_port, bin, cookie,
#                    log, session, socket
#   pids             one line "PID START" per program (helper, member, rejoined member) the lab started
#   panes            the same for the shells of the member panes (pane.sh), which offer a rejoin
#   memberI.out/.log member I's stdout and stderr, every life appended; memberI.pid its current PID,
#                    memberI.pane its tmux pane
# START is the process's start time (field 22 of /proc/PID/stat, clock ticks since boot). A PID and its
# start time name one process for good: a PID the system has since given to another process has another
# start time, so `make stop` never signals a process the lab did not start.

lab_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${LAB_DIR:-$lab_root/target/lab}

# start_time PID: prints the start time of PID, or fails if there is no such process.
start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # the fields after "(comm)"; comm may hold spaces
    # shellcheck disable=SC2086
    set -- $stat
    echo "${20}"
}

# record PID FILE: appends PID with its start time to FILE.
record() {
    echo "$1 $(start_time "$1")" >>"$2"
}

# alive PID START: whether PID is still the recorded process and has not ended (a zombie has ended).
alive() {
    local stat now
    now=$(start_time "$1") || return 1
    [ "$now" = "$2" ] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# lab_tmux ARGS...: tmux on the lab's own server socket when one was chosen (TMUX_SOCKET).
lab_tmux() {
    tmux ${socket:+-L "$socket"} "$@"
}

# load_lab: reads the settings of the running lab, or says there is none.
load_lab() {
    if [ ! -f "$dir/lab.env" ]; then
        echo "no lab has been started here ($dir/lab.env is missing): make lab" >&2
        return 1
    fi
    # shellcheck disable=SC1091
    source "$dir/lab.env"
}

# member_command ARGS...: sets the array `cmd` to the lab's member command with ARGS appended.
member_command() {
    cmd=(env "RUST_LOG=$log" "$bin/tom-member" --helper "127.0.0.1:$port" --host 127.0.0.1 --port "$member_port")
    if [ -n "$cookie" ]; then cmd+=(--cookie-file "$cookie"); fi
    cmd+=("$@")
}

# known_peers [EXCEPT_INDEX]: "--peer 127.0.0.1:PORT" for the last port each other member logged it
# listens on, so that a rejoin still finds the group when the helper is gone.
known_peers() {
    local log_file index
    peers=()
    for log_file in "$dir"/member*.log; do
        [ -f "$log_file" ] || continue
        index=${log_file##*/member}
        index=${index%.log}
        [ "$index" = "${1:-}" ] && continue
        local listen
        listen=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$log_file" | tail -n 1)
        if [ -n "$listen" ]; then peers+=(--peer "127.0.0.1:$listen"); fi
    done
}
