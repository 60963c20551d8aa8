#!/usr/bin/env bash
# End-to-end SLURM test: run the demo cohort (config/slides.tsv -> sample_slides/) through real
# sbatch jobs on a one-node SLURM cluster started on this machine, run it again locally
# (snakemake --cores 2), and check that eligibility.csv, slides.csv and every cells/*.parquet are
# byte for byte the same (SLURM: every slide in its own jobs; locally: several per job). Exit 0 and a last line "PASS: ..." on success, "FAIL: ..." and non-zero
# otherwise.
#
# Needs root on Debian/Ubuntu (apt-get installs slurm-wlm and munge if missing), Python 3.11 and
# at least 2 CPUs (the local run uses --cores 2). Self-contained and idempotent: the cluster's
# config, state and logs, a copy of the checkout and both result folders live in one
# `mktemp -d` folder, removed on success (kept on failure, for the logs); the checkout gets no
# results/ or .snakemake/. The only lasting changes: the packages, the SLURM executor plugin in the
# project's .venv (created with `pip install -e .` when missing), and /etc/slurm/slurm.conf, which
# points at the scratch config only while the test runs (the slurm tools read that path; see the
# notes below). The three daemons are always stopped on exit.
#
# Recipe (verified with slurm-wlm 22.05.8, munge 0.5.15, snakemake 9.27.1, plugin 2.8.0):
# - No accounting database, so `sacct` fails: `--slurm-status-command squeue` is required, and the
#   plugin uses it only if MinJobAge >= 3 x --slurm-init-seconds-before-status-checks.
# - slurm.conf must be at /etc/slurm/slurm.conf: SLURM_CONF alone is dropped by the jobstep
#   plugin before it calls srun inside the job.
# - CR_Core_Memory with DefMemPerCPU, and mem_mb per rule from workflow/profiles/default/, so
#   that jobs share the node instead of each taking all of its memory.
#
# Usage: tests/cluster/slurm_e2e.sh     (.ci/run runs it under `timeout -k 30 900`)
# Environment: SLURM_E2E_JOBS (jobs submitted at once, default 20),
#              SLURM_E2E_ARRAY (rules sent as array jobs, default slide_info,measure_chunk;
#              empty = none),
#              SLURM_E2E_KEEP=1 keeps the scratch folder after a pass too.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
JOBS=${SLURM_E2E_JOBS:-20}
ARRAY_RULES=${SLURM_E2E_ARRAY-slide_info,measure_chunk}
PLUGIN_SPEC='snakemake-executor-plugin-slurm>=2.6'
# Limits that end a stuck run before .ci/run's 900 s. Measured on 2 CPUs: the SLURM run 304-308 s
# (50-60 s of it validate_inputs compiling the Numba kernels into a cold cache, then 33 jobs at
# about 14 s each, two at a time), the local run 54-142 s.
SLURM_RUN_LIMIT=540
LOCAL_RUN_LIMIT=240

T0=$SECONDS
log() { printf '[slurm_e2e %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (installs packages, starts the slurm daemons)"
NCPU=$(nproc)
[ "$NCPU" -ge 2 ] || fail "needs at least 2 CPUs (the local run uses --cores 2); this machine has $NCPU"
if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    fail "a slurmctld or slurmd is already running; this test starts and stops its own cluster"
fi

BASE=$(mktemp -d /tmp/cxcr4score-slurm-e2e.XXXXXX)
CONF_LINK=/etc/slurm/slurm.conf
CONF_BACKUP=""
STARTED_MUNGED=""
CHILD=""
PASSED=""

teardown() {
    local rc=$?
    set +e
    trap - INT TERM ERR
    if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; fi
    if [ -f "$BASE/run/slurmctld.pid" ]; then scancel --quiet --user=root 2>/dev/null; fi
    local pidfile pid
    for pidfile in "$BASE/run/slurmd.pid" "$BASE/run/slurmctld.pid" ${STARTED_MUNGED:+/run/munge/munged.pid}; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null && echo "slurm_e2e: killed $pidfile ($pid) after 5 s"
    done
    if [ -L "$CONF_LINK" ] && [ "$(readlink "$CONF_LINK")" = "$BASE/etc/slurm.conf" ]; then
        rm -f "$CONF_LINK"
        [ -n "$CONF_BACKUP" ] && mv "$CONF_BACKUP" "$CONF_LINK"
    fi
    if [ -n "$PASSED" ] && [ "$rc" = 0 ] && [ -z "${SLURM_E2E_KEEP:-}" ]; then
        rm -rf "$BASE"
    else
        echo "slurm_e2e: logs kept in $BASE (log/, snakemake-*.log, src/.snakemake/slurm_logs/)"
    fi
    log "daemons stopped"
}
trap teardown EXIT
trap 'fail "interrupted by a signal"' INT TERM
trap 'echo "FAIL: line $LINENO: \"$BASH_COMMAND\" exited $?"' ERR

# Run a command under `timeout` with its output to a log file, in the background so that a
# signal to this script is handled at once (teardown then stops the command).
bounded() {
    local limit=$1 logfile=$2; shift 2
    timeout -k 10 "$limit" "$@" >"$logfile" 2>&1 &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# --- 1. packages ------------------------------------------------------------------------------
t=$SECONDS
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v srun >/dev/null; then
    log "installing slurm-wlm and munge with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >"$BASE/apt.log" 2>&1 \
        || { tail -n 30 "$BASE/apt.log"; fail "apt-get install slurm-wlm munge"; }
fi
log "slurm-wlm $(dpkg-query -W -f '${Version}' slurm-wlm 2>/dev/null), munge $(dpkg-query -W -f '${Version}' munge 2>/dev/null) ($((SECONDS - t)) s)"
T_APT=$((SECONDS - t))

# --- 2. the project's venv and the executor plugin ---------------------------------------------
t=$SECONDS
if [ ! -x "$REPO/.venv/bin/snakemake" ]; then
    log "creating $REPO/.venv (pip install -e .)"
    python3 -m venv "$REPO/.venv"
    "$REPO/.venv/bin/pip" install -q -e "$REPO"
fi
# shellcheck disable=SC1091
. "$REPO/.venv/bin/activate"
if ! python - <<'PY' 2>/dev/null
import importlib.metadata as m
from packaging.version import Version
raise SystemExit(Version(m.version("snakemake-executor-plugin-slurm")) < Version("2.6"))
PY
then
    log "pip install '$PLUGIN_SPEC' into $REPO/.venv"
    pip install -q "$PLUGIN_SPEC" >"$BASE/pip.log" 2>&1 || { cat "$BASE/pip.log"; fail "pip install $PLUGIN_SPEC"; }
fi
SNAKEMAKE_VERSION=$(snakemake --version)
PLUGIN_VERSION=$(python -c 'import importlib.metadata as m; print(m.version("snakemake-executor-plugin-slurm"))')
JOBSTEP_VERSION=$(python -c 'import importlib.metadata as m; print(m.version("snakemake-executor-plugin-slurm-jobstep"))')
log "snakemake $SNAKEMAKE_VERSION, snakemake-executor-plugin-slurm $PLUGIN_VERSION (jobstep $JOBSTEP_VERSION) ($((SECONDS - t)) s)"
ARRAY_ARGS=()
if [ -n "$ARRAY_RULES" ]; then
    if snakemake --help 2>/dev/null | grep -q -- '--slurm-array-jobs'; then
        ARRAY_ARGS=(--slurm-array-jobs "$ARRAY_RULES")
        log "array jobs: --slurm-array-jobs $ARRAY_RULES"
    else
        log "array jobs: this plugin has no --slurm-array-jobs (needs >= 2.6); jobs are submitted one by one"
    fi
fi
T_PIP=$((SECONDS - t))

# --- 3. a one-node cluster ---------------------------------------------------------------------
t=$SECONDS
HOST=$(hostname -s)
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
mkdir -p "$BASE"/{etc,state,spool,run,log}
cat >"$BASE/etc/slurm.conf" <<EOF
ClusterName=cxcr4test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
NodeName=$HOST CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mkdir -p /etc/slurm
if [ -e "$CONF_LINK" ] && [ ! -L "$CONF_LINK" ]; then
    CONF_BACKUP="$BASE/slurm.conf.orig"
    mv "$CONF_LINK" "$CONF_BACKUP"      # put back on exit
fi
ln -sfn "$BASE/etc/slurm.conf" "$CONF_LINK"

mkdir -p /run/munge && chown munge:munge /run/munge
[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
if ! munge -n </dev/null >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    STARTED_MUNGED=1
fi
slurmctld
slurmd
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qx idle && break
    sleep 1
done
sinfo -h -o %T 2>/dev/null | grep -qx idle \
    || { tail -n 20 "$BASE"/log/*.log; fail "the node did not become idle within 60 s"; }
log "cluster up: node $HOST, $NCPU CPUs, RealMemory=$MEM_MB MB, partition debug ($((SECONDS - t)) s)"
T_DAEMONS=$((SECONDS - t))

# --- 4. a copy of the checkout, so the checkout gets no results/ or .snakemake/ ----------------
mkdir -p "$BASE/src"
tar -C "$REPO" -cf - --exclude=./.git --exclude=./.venv --exclude=./.snakemake --exclude=./results \
    --exclude=./.hypothesis --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=__pycache__ \
    --exclude=./build --exclude='*.egg-info' . | tar -C "$BASE/src" -xf -
cd "$BASE/src"

# --- 5. the demo through SLURM -----------------------------------------------------------------
# Every slide in its own jobs (small_image_mb=0: slide_info, measure_chunk, ... per slide, as a
# whole-slide cohort runs), so that the array jobs are exercised; the local run in step 6 scores
# the demo's small images several per job, and the two must agree byte for byte.
t=$SECONDS
log "snakemake --executor slurm (log: $BASE/snakemake-slurm.log)"
rc=0
bounded "$SLURM_RUN_LIMIT" "$BASE/snakemake-slurm.log" snakemake --executor slurm --workflow-profile workflow/profiles/default \
    --jobs "$JOBS" --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2 \
    --default-resources slurm_partition=debug runtime=10 "${ARRAY_ARGS[@]}" \
    --config outdir="$BASE/out-slurm" small_image_mb=0 || rc=$?
T_SLURM=$((SECONDS - t))
if [ "$rc" != 0 ]; then
    tail -n 60 "$BASE/snakemake-slurm.log"
    [ "$rc" = 124 ] && fail "the SLURM run took over $SLURM_RUN_LIMIT s"
    fail "the SLURM run exited $rc"
fi
# Every job the cluster ran (MinJobAge=600 keeps finished jobs listed) must be COMPLETED.
squeue --states=all -h -o '%i|%T|%k' >"$BASE/jobs.txt"
n_jobs=$(wc -l <"$BASE/jobs.txt")
n_bad=$(grep -vc '|COMPLETED|' "$BASE/jobs.txt" || true)
[ "$n_jobs" -gt 0 ] || fail "squeue lists no jobs: nothing ran through SLURM"
[ "$n_bad" = 0 ] || { cat "$BASE/jobs.txt"; fail "$n_bad SLURM jobs did not complete"; }
summary=$(cut -d'|' -f3 "$BASE/jobs.txt" | sed -e 's/^rule_//' -e 's/_wildcards_.*//' | sort | uniq -c \
    | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')
n_array=$(cut -d'|' -f1 "$BASE/jobs.txt" | grep -c '_' || true)
n_arrays=$(cut -d'|' -f1 "$BASE/jobs.txt" | { grep '_' || true; } | cut -d_ -f1 | sort -u | wc -l)
log "SLURM run done ($T_SLURM s): $n_jobs sbatch jobs COMPLETED ($summary)"
# The plugin puts the jobs of a rule that are ready together into one array, and submits a job
# ready on its own as a plain job. All slide_info jobs are ready together (after validate_inputs,
# a local rule), so they always form an array; each slide here has one chunk, and its
# measure_chunk job is ready when its slide_info ends, so whether any share an array is timing.
if [ ${#ARRAY_ARGS[@]} -gt 0 ]; then
    log "array jobs ($ARRAY_RULES): $n_array of the $n_jobs jobs ran as tasks of $n_arrays arrays"
    case ",$ARRAY_RULES," in
        *,slide_info,*|*,all,*) [ "$n_array" -gt 0 ] || fail "slide_info was to run as an array job, but no job ran as an array task" ;;
    esac
fi

# --- 6. the same demo locally ------------------------------------------------------------------
t=$SECONDS
log "snakemake --cores 2 (log: $BASE/snakemake-local.log)"
rc=0
bounded "$LOCAL_RUN_LIMIT" "$BASE/snakemake-local.log" snakemake --cores 2 --config outdir="$BASE/out-local" \
    || rc=$?
T_LOCAL=$((SECONDS - t))
if [ "$rc" != 0 ]; then
    tail -n 60 "$BASE/snakemake-local.log"
    fail "the local run exited $rc"
fi
log "local run done ($T_LOCAL s)"

# --- 7. compare --------------------------------------------------------------------------------
cd "$BASE"
failed=0
files=(eligibility.csv slides.csv)
for f in out-local/cells/*.parquet; do files+=("cells/$(basename "$f")"); done
for f in "${files[@]}"; do
    if cmp -s "out-slurm/$f" "out-local/$f"; then
        echo "PASS: $f identical ($(wc -c <"out-local/$f") bytes)"
    else
        echo "FAIL: $f differs between the SLURM and the local run"
        cmp "out-slurm/$f" "out-local/$f" || true
        failed=1
    fi
done
log "times: apt ${T_APT} s, pip ${T_PIP} s, daemons ${T_DAEMONS} s, slurm run ${T_SLURM} s, local run ${T_LOCAL} s"
[ "$failed" = 0 ] || fail "the SLURM run's tables differ from the local run's"
PASSED=1
echo "PASS: the demo cohort through $n_jobs real SLURM jobs (plugin $PLUGIN_VERSION${ARRAY_ARGS:+, array jobs for $ARRAY_RULES}) equals the local run byte for byte"
