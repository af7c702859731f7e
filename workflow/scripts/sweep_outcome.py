"""Adapter: the training outcome of every network of one sweep grid point (ntkscaling.sweep.training_outcome):
diverged or not, final training loss, test error and MSE; the sweep's checkpoint reads it to decide what else
of the point runs."""
import csv

from ntkscaling import files, jobs
from ntkscaling.pipeline import sweep

with jobs.job(snakemake):
    outcomes = []
    for path in snakemake.input.metrics:
        with open(path, newline="") as f:
            outcomes.append(sweep.training_outcome(list(csv.DictReader(f))))
    files.write_rows(snakemake.output[0], outcomes, columns=sweep.OUTCOME_COLUMNS)
    status = sweep.point_status(outcomes)
    print(f"{status['networks']} networks, {status['networks_diverged']} diverged: {status['status']}")
