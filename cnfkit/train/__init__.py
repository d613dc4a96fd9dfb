"""One trainer for every experiment.

The package: :mod:`~cnfkit.train.trainer` (the loop), :mod:`~cnfkit.train.checkpoint` (the file format
and fingerprints), :mod:`~cnfkit.train.sampler` (batches as a function of the step) and
:mod:`~cnfkit.train.distributed` (torchrun).

``Trainer(model, loss_fn, batches, ...).fit()`` runs Adam for a fixed number of steps with tqdm
progress, periodic evaluation, optional gradient clipping and atomic checkpoints, and resumes from
its last checkpoint exactly (same parameters as an uninterrupted run).

Design decisions that make exact resumption possible:

* ``batches`` is a function of the step number, ``batches(step) -> batch`` (e.g.
  :class:`EpochSampler`): which examples a step sees depends on nothing but the step.
* Randomness inside ``loss_fn`` (dequantization noise, ...) comes from torch's global RNG, whose
  state (with NumPy's, Python's and CUDA's) is saved in every checkpoint.
* Checkpoints hold model, optimiser, RNG states, step and history: tensors and plain Python types
  only, loaded with ``torch.load(weights_only=True)`` (a file that carries pickled code is refused,
  never run).  Each file starts with a header holding the sha256 of its payload (a corrupt file is
  refused), is written to a temporary file and renamed (a crash mid-write never corrupts the last
  good checkpoint; stale temporaries of killed writers are removed on the next start), and records
  fingerprints of the model (its structure and parameter shapes), the data (the batches) and the
  training configuration: resuming into a different run is refused with a message that says what
  differs.

Failures name the step: a non-finite loss or gradient norm raises :class:`NonFiniteError`, any other
error inside a step :class:`TrainingError` (the original exception chained).  SIGINT (Ctrl-C, a
Jupyter interrupt), SIGTERM and SIGUSR1 (what schedulers send before pre-empting a job) finish the
current step, write a checkpoint and raise :class:`TrainingInterrupted`; ``fit()`` again resumes.
Under ``torchrun`` (``init_distributed``) the model is wrapped in DistributedDataParallel (gloo on
CPU, nccl on CUDA); rank 0 writes checkpoints and shows progress.
"""

from .checkpoint import (
    CheckpointError,
    atomic_save,
    data_fingerprint,
    model_fingerprint,
    read_checkpoint,
    tensor_digest,
)
from .distributed import init_distributed, rank_and_world
from .sampler import EpochSampler
from .trainer import (
    LossFn,
    NonFiniteError,
    TrainConfig,
    Trainer,
    TrainingError,
    TrainingInterrupted,
    adam,
    check_schedule,
    learning_rate,
    train_steps,
)

__all__ = [
    "CheckpointError",
    "EpochSampler",
    "LossFn",
    "NonFiniteError",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "adam",
    "atomic_save",
    "check_schedule",
    "data_fingerprint",
    "init_distributed",
    "learning_rate",
    "model_fingerprint",
    "rank_and_world",
    "read_checkpoint",
    "tensor_digest",
    "train_steps",
]
