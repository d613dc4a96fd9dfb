#!/usr/bin/env bash
# Train the super-resolution models of the full profile on one node with 8 GPUs, pre-emptible.
#   sbatch scripts/slurm_superres.sh            (resubmit the same script after a pre-emption or time limit)
# SLURM sends SIGUSR1 90 s before the time limit (--signal) and SIGTERM on pre-emption; cnfkit checkpoints and exits
# with status 75, and --requeue puts the job back in the queue; the next run resumes from the checkpoint.
#SBATCH --job-name=cnfkit-sr
#SBATCH --nodes=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@90
#SBATCH --requeue
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
export CNFKIT_DATA_ROOT="${CNFKIT_DATA_ROOT:-$HOME/.cache/cnfkit/data}"   # ImageNet32/ and ImageNet64/ live here (see data/README.md)
export CNFKIT_THREADS=4
# forward the scheduler's signals to torchrun, which passes SIGTERM on to every training process
preempted=0
trap 'preempted=1; kill -TERM "$child" 2>/dev/null' USR1 TERM
.venv/bin/torchrun --standalone --nproc_per_node=8 -m cnfkit.experiments.superres \
    --profile full --checkpoint-dir results/full/checkpoints &
child=$!
status=0
while :; do  # a trapped signal interrupts wait: keep waiting until the checkpointing processes have exited
    if wait "$child"; then status=0; else status=$?; fi
    kill -0 "$child" 2>/dev/null || break
done
if [ "$preempted" = 1 ] || [ "$status" -eq 75 ]; then
    echo "pre-empted: checkpoint written; requeueing (the next run resumes)"
    scontrol requeue "$SLURM_JOB_ID" || true
    exit 0
fi
exit "$status"
