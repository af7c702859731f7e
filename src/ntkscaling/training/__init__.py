"""Network training on a nested subset (PyTorch Lightning): the "network" curve of the pipeline.

- `settings`: what a run is, without torch (network and training records, step budget, learning-rate
  schedule, evaluation and checkpoint steps); the config check and job sizing read it.
- `batches`: the batches a network trains on (`EpochBatches`), torch only.
- `module`: the centred network as a LightningModule and its data.
- `divergence`: when a run has diverged (one rule for the training loss and the evaluations).
- `callbacks`: evaluation, best-state tracking, the checkpoint schedule, the live record, progress lines.
- `checkpoints`: a run's checkpoints, read without Lightning (where to resume, which steps were saved).
- `run`: `train_network` (with resume) and the untrained network's checkpoint.
- `linearized`: the linearized network, trained by the same optimizer, batches and schedule in function space.

Everything public is importable from here (`training.train_network`, `training.NetworkSettings`); each name
is loaded when first asked for, so importing `ntkscaling.training.settings` alone stays free of torch.
"""
import importlib

_HOMES = {
    "settings": ("OPTIMIZERS", "LR_SCHEDULES", "SELECT_BY", "VALIDATION_KEYS", "linearized_problem", "NetworkSettings", "TrainSettings", "step_budget",
                 "lr_factor", "checkpoint_steps", "evaluation_steps", "velocity_gap_steps", "with_velocity_partners",
                 "velocity_pairs"),
    "divergence": ("BLOWUP", "DivergenceError"),
    "batches": ("EpochBatches",),
    "module": ("SubsetDataModule", "NetworkModule"),
    "callbacks": ("evaluate_splits", "BestState", "CheckpointAndEvaluate", "LiveRecord", "LineProgress"),
    "checkpoints": ("resume_point", "saved_checkpoint_steps", "run_checkpoints"),
    "run": ("train_network", "save_init_checkpoint", "LIGHTNING_NOISE"),
    "linearized": ("train_linearized",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)


def __getattr__(name):
    if name in _HOME_OF:
        return getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
