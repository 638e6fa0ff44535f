#!/usr/bin/env bash
# The GPU run (issue 15, item 4), offline, on one NVIDIA GPU with a CUDA build of jax installed:
#   1. pip install --no-deps --no-build-isolation --no-index -e .   (nothing else is installed)
#   2. print jax.devices(); stop unless JAX runs on the required platform (exit 3) and the
#      project's modules import (exit 4)
#   3. benchmarks/speed.py --no-reference (1, 16 and 128 seeds in one vmap) -> speed.jsonl
#   4. the seed study's figure 3 (10..5000 actions), then figures 1, 2, 4, at the seed's settings
#      (12 seeds, 100 epochs, ips / dr / regression), each grid coarse to fine -> blog/rows.jsonl
#   5. results.md and figureN.md / figureN.png (finished x values; partial figures marked)
# within a time budget, most important first. Rerunning with the same output folder resumes:
# a finished speed benchmark and finished study cells are skipped (blog/rows.jsonl).
#
# Usage: bash benchmarks/gpu.sh [--dry-run]
#
# Environment (all optional):
#   TOWERJAX_GPU_BUDGET_S      seconds for the whole script, default 540; it stops itself before
#   TOWERJAX_GPU_DRY_RUN=1     as --dry-run: toy sizes (2 seeds, 2 epochs, one x value per figure,
#                              the regression learner) on CPU (JAX_PLATFORMS=cpu), no install
#   TOWERJAX_GPU_OUT           output folder; default $OUT if set, else benchmarks/results/gpu
#                              (dry run: benchmarks/results/gpu-dry-run)
#   TOWERJAX_GPU_RESUME_FROM   a previous output folder copied in first (resume on a fresh machine)
#   TOWERJAX_GPU_INSTALL       1: run step 1 (default), 0: skip it (default in a dry run)
#   TOWERJAX_GPU_PLATFORM      JAX platform required, default cuda (dry run: cpu)
#   TOWERJAX_GPU_SEEDS         seeds per cell, default 12 (dry run: 2)
#   TOWERJAX_GPU_EPOCHS        epochs per run, default 100 (dry run: 2)
#   TOWERJAX_GPU_FIGURES       figures, most important first, default 3,1,2,4
#   TOWERJAX_GPU_SPEED_S       most seconds for the speed benchmark, default 150
#   PYTHON                     the interpreter, default python
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

dry_run="${TOWERJAX_GPU_DRY_RUN:-0}"
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu.sh: error: unknown argument $arg (usage: bash benchmarks/gpu.sh [--dry-run])" >&2; exit 2 ;;
    esac
done
[[ "$dry_run" == 1 ]] || dry_run=0

cd "$(dirname "$0")/.." || exit 1
python="${PYTHON:-python}"
budget="${TOWERJAX_GPU_BUDGET_S:-540}"
start=$(date +%s)
deadline=$((start + budget))
figures="${TOWERJAX_GPU_FIGURES:-3,1,2,4}"
speed_cap="${TOWERJAX_GPU_SPEED_S:-150}"
report_reserve=20  # seconds kept for the last report
if [[ "$dry_run" == 1 ]]; then
    out="${TOWERJAX_GPU_OUT:-${OUT:-benchmarks/results/gpu-dry-run}}"
    install="${TOWERJAX_GPU_INSTALL:-0}"
    platform="${TOWERJAX_GPU_PLATFORM:-cpu}"
    seeds="${TOWERJAX_GPU_SEEDS:-2}"
    epochs="${TOWERJAX_GPU_EPOCHS:-2}"
    dry=(--dry-run)
    # speed.py at toy sizes (gpu_run.py speed --dry-run shrinks the problem and towers)
    speed_args=(--no-reference --seeds 2 --seeds-per-device "" --epochs 1 --rounds 1 --full-epochs 2 --devices 1)
    report_reserve=10
    # toy programs: compile fast rather than run fast (halves the dry run's CPU time)
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
else
    out="${TOWERJAX_GPU_OUT:-${OUT:-benchmarks/results/gpu}}"
    install="${TOWERJAX_GPU_INSTALL:-1}"
    platform="${TOWERJAX_GPU_PLATFORM:-cuda}"
    seeds="${TOWERJAX_GPU_SEEDS:-12}"
    epochs="${TOWERJAX_GPU_EPOCHS:-100}"
    dry=()
    speed_args=(--no-reference --seeds 1,16,128 --seeds-per-device "" --epochs 2 --rounds 3 --full-epochs 100)
    # compiled programs survive a restart on the same machine (a cell cut short compiles once)
    export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/towerjax/jax-compilation}"
fi
export JAX_PLATFORMS="$platform"

mkdir -p "$out" || exit 1
if [[ -n "${TOWERJAX_GPU_RESUME_FROM:-}" && -d "$TOWERJAX_GPU_RESUME_FROM" ]]; then
    cp -rn "$TOWERJAX_GPU_RESUME_FROM"/. "$out"/ && chmod -R u+w "$out" || exit 1
fi
# the checkout's towerjax even where the install below fails (an old setuptools, say)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee -a "$out/gpu.log") 2>&1

left() { echo $((deadline - $(date +%s))); }
say() { echo "gpu.sh [$(($(date +%s) - start))s, $(left)s left]: $*"; }
failed=0

say "output $out, budget ${budget}s, platform $platform$([[ "$dry_run" == 1 ]] && echo ', DRY RUN (toy sizes)')"

# 1. install the project (offline: no index, no dependencies, no build isolation)
if [[ "$install" == 1 ]]; then
    say "pip install --no-deps --no-build-isolation --no-index -e ."
    if ! "$python" -m pip install --no-deps --no-build-isolation --no-index -e . >"$out/pip.log" 2>&1; then
        tail -n 20 "$out/pip.log"
        say "pip install failed (log above, all of it in $out/pip.log); going on with the checkout on PYTHONPATH"
    fi
fi

# 2. the device
say "devices:"
"$python" benchmarks/gpu_run.py device --platform "$platform" --out "$out" || exit $?

# 3. the speed benchmark, once (speed.jsonl marks it done)
if [[ -s "$out/speed.jsonl" ]]; then
    say "speed: already done ($out/speed.jsonl), skipped"
elif [[ -e "$out/speed.failed" ]]; then
    say "speed: failed in an earlier run ($(cat "$out/speed.failed")); skipped: delete $out/speed.failed to retry"
else
    cap=$(($(left) - report_reserve))
    ((cap > speed_cap)) && cap=$speed_cap
    if ((cap < 10)); then
        say "speed: no time left, skipped"
    else
        say "speed: benchmarks/speed.py ${speed_args[*]} (at most ${cap}s)"
        timeout -k 5 "$cap" "$python" benchmarks/gpu_run.py speed "${dry[@]}" --all-seeds-at-once -- "${speed_args[@]}" \
            >"$out/speed.part"
        status=$?
        cat "$out/speed.part"
        if ((status == 0)); then
            grep '^{' "$out/speed.part" >"$out/speed.jsonl.tmp" && mv "$out/speed.jsonl.tmp" "$out/speed.jsonl"
            rm -f "$out/speed.part"
            say "speed: wrote $out/speed.jsonl"
        else
            what=$( ((status == 124 || status == 137)) && echo "stopped at its ${cap}s cap" || echo "exit status $status")
            echo "$what" >"$out/speed.failed"
            say "speed: $what; the study goes on"
            ((status == 124 || status == 137)) || failed=1
        fi
    fi
fi

# 4. the seed study's figures, cell by cell, resumable; no cell is started that cannot finish in time
cap=$(($(left) - report_reserve))
status=1  # the report below is written unless the study wrote it
if ((cap < 10)); then
    say "study: no time left, skipped; rerun to resume"
else
    say "study: figures $figures, $seeds seeds, $epochs epochs (at most ${cap}s)"
    timeout -k 5 "$cap" "$python" benchmarks/gpu_run.py study --out "$out" --deadline "$((deadline - report_reserve))" \
        --figures "$figures" --seeds "$seeds" --epochs "$epochs" "${dry[@]}" --all-seeds-at-once
    status=$?
    if ((status == 124 || status == 137)); then
        say "study: stopped at the budget (the cell in flight is lost); rerun to resume"
    elif ((status != 0)); then
        say "study: error (exit status $status)"
        failed=1
    fi
fi

# 5. the report, from whatever finished (the study writes it after every x value and at its end)
if ((status != 0)); then
    "$python" benchmarks/gpu_run.py report --out "$out" || failed=1
fi
say "done; results in $out/results.md"
exit "$failed"
