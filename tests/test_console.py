"""The quiet console (one line per finished job) and the closing summary, on Snakemake's own words."""
import csv

from ntkscaling import console

SNAKEMAKE_OUTPUT = """Using workflow specific profile profiles/default for setting default command line arguments.
Assuming unrestricted shared filesystem usage.

SNAKEMAKE
=========
  Date: 2026-12-06 22:38:53
  Host: vm
  Command: /work/main/.venv/bin/snakemake --cores 2
Building DAG of jobs...
Provided cores: 2
Job stats:
job              count
-------------  -------
prepare_data         1
train_network        1
total                2

Select jobs to execute...
Execute 1 jobs...

[Sun Dec  6 22:38:54 2026]
localrule prepare_data:
    input: /work/main/src/ntkscaling/__init__.py, /work/main/src/ntkscaling/data.py
    output: results/x/data/prepared.npz
    log: logs/x/prepare_data.log
    jobid: 4
    reason: Missing output files: results/x/data/prepared.npz
    resources: tmpdir=/tmp, runtime=30, mem_mb=4000
Shell command: None
[Sun Dec  6 22:38:54 2026]
rule train_network:
    input: /work/main/src/ntkscaling/training.py
    output: results/x/train/w16/s0/n32/metrics.csv
    jobid: 7
    wildcards: width=16, seed=0, n=32
    resources: tmpdir=/tmp
Shell command: None
[Sun Dec  6 22:38:56 2026]
Finished jobid: 4 (Rule: prepare_data)
1 of 2 steps (50%) done
Error in rule train_network:
    jobid: 7
    log: logs/x/train/w16_s0_n32.log (check log file(s) for error details)
RuleException: loss went to nan
Complete log(s): /work/main/.snakemake/log/2026.log
"""


class Clock:
    """A clock the test moves: each line of input advances it by the seconds given for that line."""
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _quiet(text, seconds_at=None):
    clock, out = Clock(), []

    def lines():
        for line in text.splitlines(keepends=True):
            clock.now += (seconds_at or {}).get(line.strip(), 0.0)
            yield line
    console.quiet(lines(), out.append, clock=clock)
    return "".join(out).splitlines()


def test_one_line_per_finished_job_with_its_duration_and_the_time_left():
    out = _quiet(SNAKEMAKE_OUTPUT, {"Finished jobid: 4 (Rule: prepare_data)": 14.0})
    jobs = [line for line in out if line.startswith("[")]
    # prepare_data's block was read at t = 0 and finished at t = 14: one step of two took 14 s, one is left
    assert jobs == ["[1/2 ~14 s left] prepare_data    14 s"]
    assert "Job stats:" in out and "total                2" in out  # the plan
    assert "Error in rule train_network:" in out and "RuleException: loss went to nan" in out
    assert any("check log file(s)" in line for line in out)
    for noise in ("Shell command", "SNAKEMAKE", "Host:", "Building DAG", "input:", "resources:", "Select jobs"):
        assert not any(noise in line for line in out), noise
    assert not any("/work/main/src" in line for line in out)  # no library paths


def test_wildcards_and_the_end_of_the_run():
    text = SNAKEMAKE_OUTPUT.split("Error in rule")[0] + (
        "[Sun Dec  6 22:39:30 2026]\nFinished jobid: 7 (Rule: train_network)\n2 of 2 steps (100%) done\n")
    out = _quiet(text, {"Finished jobid: 7 (Rule: train_network)": 125.0})
    assert [line for line in out if line.startswith("[")][-1] == "[2/2] train_network  width=16 seed=0 n=32  2 min"


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_closing_summary_quotes_the_exponents_table(tmp_path):
    run = tmp_path / "results" / "demo"
    (run / "summary").mkdir(parents=True)
    base = {"dataset": "digits", "arch": "mlp", "kind": "", "k": "", "ridge": "", "metric": "test_error",
            "network_method": "network_best"}
    rows = [
        {**base, "width": "64", "method": "network_best", "alpha": 0.5, "alpha_lo": 0.4, "alpha_hi": 0.6,
         "alpha_deficit": 0.0, "deficit_lo": 0.0, "deficit_hi": 0.0},
        {**base, "width": "1024", "method": "network_best", "alpha": 0.71, "alpha_lo": 0.66, "alpha_hi": 0.77,
         "alpha_deficit": 0.0, "deficit_lo": 0.0, "deficit_hi": 0.0},
        {**base, "width": "1024", "method": "entk_init", "kind": "mean", "k": "0", "ridge": "tuned", "alpha": 0.52,
         "alpha_lo": 0.47, "alpha_hi": 0.58, "alpha_deficit": 0.19, "deficit_lo": 0.12, "deficit_hi": 0.25},
        {**base, "width": "1024", "method": "entk_init", "kind": "mean", "k": "0", "ridge": "0.0", "alpha": 9,
         "alpha_lo": 9, "alpha_hi": 9, "alpha_deficit": 9, "deficit_lo": 9, "deficit_hi": 9},
        {**base, "width": "inf", "method": "infinite_ntk", "kind": "mean", "k": "0", "ridge": "tuned",
         "alpha": 0.48, "alpha_lo": 0.44, "alpha_hi": 0.52, "alpha_deficit": 0.23, "deficit_lo": 0.18,
         "deficit_hi": 0.29},
        {**base, "width": "1024", "method": "entk_after", "kind": "mean", "k": "256", "ridge": "tuned",
         "alpha": 0.6, "alpha_lo": 0.5, "alpha_hi": 0.7, "alpha_deficit": 0.11, "deficit_lo": -0.02,
         "deficit_hi": 0.24},
        {**base, "width": "1024", "method": "network", "metric": "test_mse", "alpha": "", "alpha_lo": "",
         "alpha_hi": "", "alpha_deficit": "", "deficit_lo": "", "deficit_hi": ""},  # unlearned: no exponent
    ]
    _write(run / "summary" / "exponents.csv", rows)
    text = console.closing_summary(str(run.relative_to(tmp_path)) if False else str(run))
    lines = text.splitlines()
    assert any(line.split() == ["network_best", "0.71", "[0.66,", "0.77]"] for line in lines)
    assert any(line.split() == ["entk_init", "0.52", "[0.47,", "0.58]", "deficit", "0.19", "[0.12,", "0.25]"]
               for line in lines)
    assert any(line.split()[:2] == ["infinite_ntk", "0.48"] for line in lines)
    assert any(line.split()[:4] == ["entk_after", "k=256", "0.60", "[0.50,"] for line in lines)
    assert "9.00" not in text and "0.40" not in text  # fixed ridges and other widths stay in the table
    assert f"table: {run}/summary/exponents.csv" in text
    assert [line.split() for line in lines if line.split()[:1] == ["network"]] == [["network"]]  # no empty deficit
    assert console.closing_summary(str(tmp_path / "missing")).count("did not include the summary") == 1
