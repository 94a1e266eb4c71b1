#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (Debian/Ubuntu, run as root), for testing
# `memad sweep --launcher slurm` for real: munged, slurmctld and slurmd, this host both
# controller and compute node, one partition `debug` (the default), no cgroups (works in a
# container: proctrack/linuxproc, task/none, no accounting daemon).
#
#   sudo tools/slurm_single_node.sh          # install if missing, configure, start (idempotent)
#   sudo tools/slurm_single_node.sh status   # daemons and the node's state
#   sudo tools/slurm_single_node.sh stop     # stop slurmd, slurmctld, munged
#
# Writes /etc/slurm/slurm.conf (only when it lacks the marker line below, or with FORCE=1),
# keeps its state in /var/spool/slurm{ctld,d} and logs in /var/log/slurm/.
set -euo pipefail

MARKER="# Written by memad tools/slurm_single_node.sh"
CONF=/etc/slurm/slurm.conf
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_one() { # pid file, name
    if running "$1"; then
        kill "$(cat "$1")"
        for _ in $(seq 50); do running "$1" || break; sleep 0.2; done
        echo "stopped $2"
    fi
}

case "${1:-start}" in
stop)
    stop_one "$SLURMD_PID" slurmd
    stop_one "$CTLD_PID" slurmctld
    stop_one "$MUNGE_PID" munged
    exit 0
    ;;
status)
    for p in "$MUNGE_PID:munged" "$CTLD_PID:slurmctld" "$SLURMD_PID:slurmd"; do
        if running "${p%%:*}"; then echo "${p#*:}: running (pid $(cat "${p%%:*}"))"; else echo "${p#*:}: stopped"; fi
    done
    if running "$CTLD_PID"; then sinfo; fi
    exit 0
    ;;
start) ;;
*)
    echo "usage: $0 [start|status|stop]" >&2
    exit 2
    ;;
esac

[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge
fi

# munge: a key readable only by the munge user, then the daemon.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! running "$MUNGE_PID"; then
    runuser -u munge -- munged
    for _ in $(seq 25); do running "$MUNGE_PID" && break; sleep 0.2; done
fi
munge -n | unmunge >/dev/null || { echo "munge does not work" >&2; exit 1; }

# slurm.conf: this host as controller and node, with its CPUs and memory.
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
if [ "${FORCE:-0}" = 1 ] || ! grep -qF "$MARKER" "$CONF" 2>/dev/null; then
    [ -f "$CONF" ] && cp "$CONF" "$CONF.bak.$(date +%s)"
    cat >"$CONF" <<EOF
$MARKER
ClusterName=memad
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups: these work inside a container.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    echo "wrote $CONF (node $HOST, $CPUS CPUs, $MEM MB)"
    # A changed configuration needs fresh daemons.
    stop_one "$SLURMD_PID" slurmd
    stop_one "$CTLD_PID" slurmctld
fi
install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

running "$CTLD_PID" || slurmctld
for _ in $(seq 50); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
running "$SLURMD_PID" || slurmd

# Wait for the node to register, and bring it back if an earlier run left it down.
for _ in $(seq 50); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    case "$state" in
    idle* | mixed* | allocated*) break ;;
    down* | drain*) scontrol update nodename="$HOST" state=resume || true ;;
    esac
    sleep 0.2
done
sinfo
case "$(sinfo -h -n "$HOST" -o %T)" in
idle* | mixed* | allocated*) echo "Slurm is up: partition debug, node $HOST; stop with: $0 stop" ;;
*)
    echo "node $HOST is not ready; see /var/log/slurm/slurmd.log and slurmctld.log" >&2
    exit 1
    ;;
esac
