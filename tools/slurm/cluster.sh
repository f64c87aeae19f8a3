#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on this machine, for foldwise's tests: its own munged,
# slurmctld and slurmd, every file under DIR, controller and node talking on localhost ports.
#
#   tools/slurm/cluster.sh start DIR [CTLD_PORT SLURMD_PORT]   # returns once the node is idle
#   SLURM_CONF=DIR/slurm.conf sbatch ...                         # use it
#   tools/slurm/cluster.sh stop DIR                              # cancel its jobs, stop it
#
# Exit status 3, with the reason on stderr, means Slurm cannot run here (not root, or not
# installed: tools/slurm/install.sh installs it); callers skip.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin

usage() { echo "usage: $0 start|stop DIR [CTLD_PORT SLURMD_PORT]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
export SLURM_CONF=$dir/slurm.conf

unavailable() { echo "$*" >&2; exit 3; }

# The pid in DIR/NAME.pid if that process is still the NAME we started (pids get reused).
live_pid() {
    local pid
    pid=$(cat "$dir/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && echo "$pid"
}

start() {
    local ctld_port=${1:-16817} slurmd_port=${2:-16818}
    [[ $(id -u) == 0 ]] || unavailable "slurmd needs root to run jobs; not root"
    for tool in munged slurmctld slurmd sbatch squeue sinfo scancel; do
        command -v "$tool" >/dev/null ||
            unavailable "$tool not found; install Slurm with tools/slurm/install.sh"
    done
    mkdir -p "$dir"/{munge,state,spool,log}
    # munged refuses a key others can read, and its socket folder must be searchable.
    chmod 711 "$dir/munge"
    (umask 077 && head -c 1024 /dev/urandom >"$dir/munge/munge.key")
    munged --force --socket="$dir/munge/socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munged.pid" --seed-file="$dir/munge/seed" \
        --log-file="$dir/log/munged.log" </dev/null >>"$dir/log/munged.out" 2>&1

    # This machine as the only node, with its real CPUs and memory (`slurmd -C`).
    local node hw
    node=$(hostname -s)
    hw=$(slurmd -C | head -n 1 | sed -E 's/^NodeName=[^ ]+ //')
    cat >"$SLURM_CONF" <<EOF
ClusterName=foldwise-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    slurmctld -f "$SLURM_CONF" </dev/null >>"$dir/log/slurmctld.out" 2>&1
    slurmd -f "$SLURM_CONF" </dev/null >>"$dir/log/slurmd.out" 2>&1
    for _ in $(seq 60); do
        if [[ $(sinfo -h -o %T 2>/dev/null) == idle ]]; then
            echo "Slurm is up: export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    echo "the Slurm node did not come up within 30 s; logs in $dir/log:" >&2
    tail -n 20 "$dir"/log/*.log >&2 || true
    return 1
}

stop() {
    if live_pid slurmctld >/dev/null; then
        # Every job on this private cluster is the test's.
        scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 40); do
            [[ -z $(squeue -h 2>/dev/null) ]] && break
            sleep 0.25
        done
    fi
    local name pid
    for name in slurmd slurmctld munged; do
        pid=$(live_pid "$name") || continue
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 40); do
            kill -0 "$pid" 2>/dev/null || continue 2
            sleep 0.25
        done
        kill -9 "$pid" 2>/dev/null || true
    done
}

case $cmd in
    start) start "${@:3}" ;;
    stop) stop ;;
    *) usage ;;
esac
