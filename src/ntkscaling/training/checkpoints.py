"""A finished or interrupted run's checkpoints, read without Lightning (importing it costs a job seconds): the
latest checkpoint a run of the same signature can resume from, the steps a run saved, and the list of its
checkpoints that the kernel evolution follows."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import files
from ..files import FileFormatError
from ..nets import models


def _callback_state(state: dict):
    """The CheckpointAndEvaluate state saved in a Lightning checkpoint, or None."""
    mine = [v for k, v in state.get("callbacks", {}).items() if k.startswith("CheckpointAndEvaluate")]
    return mine[0] if mine else None


def resume_point(out_dir: Path, signature: dict):
    """(path, step) of the latest checkpoint in out_dir written by a run with this signature (same data, model,
    training settings and schedule), or None. Checkpoints of any other run are ignored, never trusted. A
    workflow's checkpoint (under results/) is checked against its record before it is loaded: one without a
    record (its job was killed between writing and recording it) is passed over, an altered one or one copied
    in from another place stops the job, named."""
    # newest first (names are zero-padded steps): usually only the last checkpoint is read
    for path in sorted(out_dir.glob("step*.ckpt"), reverse=True):
        if files.is_workflow_file(path):
            if not files.digest_path(path).exists():
                continue
            try:
                files.verify(path)
            except FileFormatError as e:
                raise FileFormatError(f"{e} (or delete it to resume from an earlier checkpoint)") from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a checkpoint cut short by the interruption itself
            continue
        mine = _callback_state(state)
        if mine is not None and mine.get("signature") == signature:
            return path, int(state["global_step"])
    return None


def saved_checkpoint_steps(ckpt_path) -> set[int]:
    """The steps at which the run that wrote this checkpoint saved checkpoints (from its own state)."""
    mine = _callback_state(models.load_checkpoint(ckpt_path))
    if mine is None:
        raise FileFormatError(f"{ckpt_path}: not a checkpoint of ntkscaling's training (no checkpoint schedule "
                              f"in it)")
    return {int(s) for s in mine["saved"]}


def run_checkpoints(rows, final_ckpt, checkpoint_dir) -> list[dict]:
    """The checkpoints a finished run saved, in step order, as {"step", "epoch", "path"}: the steps that
    `rows` (its metrics rows) evaluated and its own state (`final_ckpt`) says were saved, in `checkpoint_dir`.
    A listed checkpoint that is missing is an error naming it (the training job must be re-run)."""
    saved = saved_checkpoint_steps(final_ckpt)  # evaluations without a checkpoint are skipped
    steps = sorted({(int(r["step"]), float(r["epoch"])) for r in rows if int(r["step"]) in saved})
    found = [{"step": s, "epoch": e, "path": Path(checkpoint_dir) / f"step{s:08d}.ckpt"} for s, e in steps]
    missing = [str(c["path"]) for c in found if not c["path"].exists()]
    if missing:
        raise FileNotFoundError(f"checkpoints of the run of {final_ckpt} are missing: {missing}; re-run its "
                                f"training job")
    return found
