# Sourced by the service scripts: stops one process they started, by its recorded PID only.

# stop_pid PID: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_pid() {
    local pid="$1" i
    kill "$pid"
    for ((i = 0; i < 20; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
}
