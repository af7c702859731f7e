"""Adapter: concatenate the tidy metric tables of every job into one."""
import csv

from ntkscaling import files, jobs

with jobs.job(snakemake):
    rows = []
    for path in snakemake.input.tables:
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    files.write_rows(snakemake.output[0], rows)
    print(f"{len(rows)} rows")
