"""Adapter: the sweep's table (ntkscaling.sweep.sweep_table): every grid point's exponents, intervals and
paired deficits beside its settings and training outcome; a diverged point is a row of its own."""
import csv
from pathlib import Path

from ntkscaling import files, jobs
from ntkscaling.analysis import scaling
from ntkscaling.pipeline import sweep

with jobs.job(snakemake):
    p = snakemake.params
    summaries = {Path(path).parents[1].name: path for path in snakemake.input.summaries}
    statuses, tables = [], []
    for name, outcome in zip(p.names, snakemake.input.outcomes):
        with open(outcome, newline="") as f:
            statuses.append(sweep.point_status(list(csv.DictReader(f))))
        tables.append(scaling.read_exponents(summaries[name]) if name in summaries else None)
        print(f"{name}: {statuses[-1]['status']} ({statuses[-1]['networks_diverged']} of "
              f"{statuses[-1]['networks']} networks diverged)")
    table = sweep.sweep_table(list(p.points), statuses, tables)
    with files.atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, index=False)
