#!/usr/bin/env bash
# Run fsnas's GPU acceptance checks on the device machine from the kit that make_kit.sh built.
#
# Usage (from the repo root, .devkit carried): bash benchmarks/device/run.sh STAGE...
#   install  unpack .devkit/site-cpXY.tar.xz into $DEVKIT_SITE (skipped when that kit is already
#            there: a warm machine), check the imports, unpack FSDD into $DEVKIT_FSDD
#   check    benchmarks/gpu_check.py   -> $OUT/gpu_check.json
#   fsdd     benchmarks/search_fsdd.py -> $OUT/search_fsdd.json (+ $OUT/fsdd_studies.db, and
#            $OUT/ray_logs_fsdd.tar.xz when it failed otherwise than "no design met the goal")
#   bench    benchmarks/gpu_bench.py   -> $OUT/gpu_bench.json
#   throughput benchmarks/gpu_throughput.py -> $OUT/gpu_throughput.json (FSDD searches,
#            --gpus-per-trial auto vs 1: trials/hour and sampled GPU utilisation)
#   all      install check fsdd bench (not throughput: all is already over one call's 10 minutes)
# Stages run in the order given; a failed or timed-out stage does not stop the next ones (a
# stage other than install needs install's work, done now or earlier on the same machine).
# Everything printed also goes to $OUT/run.log. Exit status: 0 when every stage gave 0, else 1
# (search_fsdd.py exits 1 when it ran but found no design that meets its goal).
#
# Env (seconds; defaults fit `install check fsdd` in 9 minutes, `bench` in 8 and
# `install throughput` in 8):
#   INSTALL_TIMEOUT_S=60  CHECK_TIMEOUT_S=240  FSDD_TIMEOUT_S=240  BENCH_TIMEOUT_S=480
#   THROUGHPUT_TIMEOUT_S=420
#   CHECK_ARGS  FSDD_ARGS  BENCH_ARGS  THROUGHPUT_ARGS   extra flags for each script, e.g.
#   FSDD_ARGS="--trials 10", THROUGHPUT_ARGS="--trials 24 --search-budget-s 90"
#   OUT (default /tmp/devkit_out), DEVKIT_SITE=/tmp/site, DEVKIT_FSDD=/tmp/fsdd, PYTHON=python3,
#   DEVKIT_UNTAR=python (unpack with Python's tarfile even where xz exists)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO" || exit 2
OUT="${OUT:-/tmp/devkit_out}"
SITE="${DEVKIT_SITE:-/tmp/site}"
FSDD="${DEVKIT_FSDD:-/tmp/fsdd}"
PY="${PYTHON:-python3}"
INSTALL_TIMEOUT_S="${INSTALL_TIMEOUT_S:-60}"
CHECK_TIMEOUT_S="${CHECK_TIMEOUT_S:-240}"
FSDD_TIMEOUT_S="${FSDD_TIMEOUT_S:-240}"
BENCH_TIMEOUT_S="${BENCH_TIMEOUT_S:-480}"
THROUGHPUT_TIMEOUT_S="${THROUGHPUT_TIMEOUT_S:-420}"
CHECK_ARGS="${CHECK_ARGS:-}"
FSDD_ARGS="${FSDD_ARGS:-}"
BENCH_ARGS="${BENCH_ARGS:-}"
THROUGHPUT_ARGS="${THROUGHPUT_ARGS:-}"
mkdir -p "$OUT"
LOG="$OUT/run.log"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
# a private Ray instance per search (never a cluster some other process started)
export RAY_ADDRESS=local

log() { echo "[run.sh $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

# stop whatever Ray a killed stage left behind: its workers would hold GPU memory.
# `ray stop --force` ends EVERY Ray process of the machine, so it runs only on a machine
# lent for this script (one with nvidia-smi) or when RAY_CLEANUP=1 says so; on a shared
# development machine it would kill other people's searches.
ray_cleanup() {
    if [[ "${RAY_CLEANUP:-}" == 1 ]] || { [[ "${RAY_CLEANUP:-}" != 0 ]] && command -v nvidia-smi >/dev/null; }; then
        timeout -k 5 30 "$PY" -m ray.scripts.scripts stop --force >>"$LOG" 2>&1 || true
    else
        log "left Ray processes alone (no nvidia-smi; RAY_CLEANUP=1 forces ray stop --force)"
    fi
}

# run_stage NAME CAP_S CMD...: run CMD under timeout, output to the terminal and run.log
run_stage() {
    local name="$1" cap="$2"
    shift 2
    log "stage $name: start (cap ${cap} s): $*"
    local t0=$SECONDS rc
    timeout -k 15 "$cap" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    local took=$((SECONDS - t0))
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        log "stage $name: TIMED OUT after ${took} s (cap ${cap} s; raise ${name^^}_TIMEOUT_S)"
    else
        log "stage $name: exit $rc after ${took} s"
    fi
    SUMMARY+=("$name rc=$rc ${took}s")
    LAST_RC=$rc
    [ "$rc" = 0 ] || FAILED=1
    return 0
}

do_install() {
    local tag kit stamp
    tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    kit="$REPO/.devkit/site-$tag.tar.xz"
    if [ ! -f "$kit" ]; then
        echo "no $kit: build it with benchmarks/device/make_kit.sh --python-version" \
            "$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" \
            "and carry .devkit ($(ls "$REPO/.devkit" 2>/dev/null | tr '\n' ' '))"
        return 1
    fi
    stamp="$(stat -c %s "$kit") $(md5sum <"$kit" | cut -d' ' -f1)"
    if [ -f "$SITE/.devkit-stamp" ] && [ "$(cat "$SITE/.devkit-stamp")" = "$stamp" ]; then
        echo "kit already in $SITE ($stamp)"
    else
        rm -rf "$SITE" && mkdir -p "$SITE" || return 1
        # the image's xz is not on record; Python's tarfile reads xz without it
        if command -v xz >/dev/null && [ "${DEVKIT_UNTAR:-tar}" = tar ]; then
            tar -xJf "$kit" -C "$SITE" || return 1
        else
            "$PY" -c 'import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    t.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))' \
                "$kit" "$SITE" || return 1
        fi
        echo "$stamp" >"$SITE/.devkit-stamp"
        echo "unpacked $kit into $SITE ($(du -sh "$SITE" | cut -f1))"
    fi
    "$PY" - <<'EOF' || return 1
import importlib, platform, sys
import pydantic, typing_extensions
import torch
print(f"python {platform.python_version()} at {sys.executable}; torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, available {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
for name in ("ray", "ray.tune", "ray.tune.search.optuna", "optuna", "sqlalchemy", "alembic",
             "fvcore.nn", "soundfile", "jsonschema", "nas.ray_backend", "nas.search"):
    module = importlib.import_module(name)
    where = getattr(module, "__file__", "") or ""
    print(f"  import {name:24s} {getattr(module, '__version__', ''):12s} {where}")
EOF
    if [ "$(ls "$FSDD/recordings" 2>/dev/null | grep -c '\.wav$')" = 3000 ]; then
        echo "FSDD already in $FSDD/recordings"
    else
        rm -rf "$FSDD"
        "$PY" "$REPO/benchmarks/device/fsdd_unpack.py" "$REPO/.devkit/fsdd.tar.xz" "$FSDD" || return 1
    fi
}

SUMMARY=()
FAILED=0
LAST_RC=0
[ $# -gt 0 ] || set -- all
STAGES=()
for s in "$@"; do
    case "$s" in
        all) STAGES+=(install check fsdd bench) ;;
        install | check | fsdd | bench | throughput) STAGES+=("$s") ;;
        *) echo "run.sh: unknown stage $s (install check fsdd bench throughput all)" >&2; exit 2 ;;
    esac
done
log "stages: ${STAGES[*]}; OUT=$OUT; repo $REPO; $(nvidia-smi -L 2>/dev/null | head -1 || echo 'no nvidia-smi')"
for s in "${STAGES[@]}"; do
    case "$s" in
        install)
            export -f do_install
            export REPO SITE FSDD PY
            run_stage install "$INSTALL_TIMEOUT_S" bash -c do_install
            ;;
        check)
            # shellcheck disable=SC2086
            run_stage check "$CHECK_TIMEOUT_S" "$PY" benchmarks/gpu_check.py "$FSDD/recordings" \
                --out "$OUT/gpu_check.json" $CHECK_ARGS
            ;;
        fsdd)
            rm -f /tmp/fsdd_studies.db
            # shellcheck disable=SC2086
            run_stage fsdd "$FSDD_TIMEOUT_S" "$PY" benchmarks/search_fsdd.py \
                --data "fsdd:$FSDD/recordings" --tracking-uri none \
                --storage sqlite:////tmp/fsdd_studies.db --out "$OUT/search_fsdd.json" $FSDD_ARGS
            ray_cleanup
            [ -f /tmp/fsdd_studies.db ] && cp /tmp/fsdd_studies.db "$OUT/fsdd_studies.db"
            # 0 = goal met, 1 = ran without meeting it; anything else: bring Ray's own logs back
            if [ "$LAST_RC" != 0 ] && [ "$LAST_RC" != 1 ] && [ -d /tmp/ray/session_latest/logs ]; then
                tar -C /tmp/ray/session_latest -cJf "$OUT/ray_logs_fsdd.tar.xz" logs 2>/dev/null &&
                    log "Ray's logs: $OUT/ray_logs_fsdd.tar.xz ($(du -h "$OUT/ray_logs_fsdd.tar.xz" | cut -f1))"
            fi
            ;;
        bench)
            # shellcheck disable=SC2086
            run_stage bench "$BENCH_TIMEOUT_S" "$PY" benchmarks/gpu_bench.py \
                --data "fsdd:$FSDD/recordings" --out-dir "$OUT" $BENCH_ARGS
            ray_cleanup
            ;;
        throughput)
            # two searches of --search-budget-s (150 s) at most each; the JSON is written after
            # each, so a stage stopped at its cap keeps the first search's figures
            # shellcheck disable=SC2086
            run_stage throughput "$THROUGHPUT_TIMEOUT_S" "$PY" benchmarks/gpu_throughput.py \
                --data "fsdd:$FSDD/recordings" --out-dir "$OUT" $THROUGHPUT_ARGS
            ray_cleanup
            ;;
    esac
done
log "summary: ${SUMMARY[*]}"
log "files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$FAILED"
