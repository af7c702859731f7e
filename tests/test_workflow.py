"""The Snakemake workflow end to end on the tiny config: outputs, report, only-stale re-runs, resume and
module use (checks that need no finished run: tests/test_workflow_checks.py)."""
import base64
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import ROOT, venv_is_current

pytestmark = pytest.mark.workflow
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


def snakemake(*args, cwd, timeout=600, repo=ROOT):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--cores", "2", *args]
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def copy_repo(dest):
    """The workflow and library, copied so that a test may edit the code without touching the checkout."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in ("Snakefile", "workflow", "profiles", "config", "envs"):
        (shutil.copy2 if part == "Snakefile" else shutil.copytree)(ROOT / part, dest / part)
    shutil.copytree(ROOT / "src" / "ntkscaling", dest / "src" / "ntkscaling",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    copy_repo(work / "repo")
    res = snakemake("--configfile", str(TINY), cwd=work, repo=work / "repo")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (work / "console.txt").write_text(res.stdout + res.stderr)
    return work


def test_a_finished_run_ends_with_its_headline_numbers(tiny_run):
    import csv
    text = (tiny_run / "console.txt").read_text()
    summary = text[text.index("ntkscaling: finished (results/tiny)"):]
    with open(tiny_run / "results" / "tiny" / "summary" / "exponents.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    widest = max(float(r["width"]) for r in rows if r["width"] not in ("", "inf"))
    entk = next(r for r in rows if r["method"] == "entk_init" and r["ridge"] == "tuned" and
                float(r["width"]) == widest and r["metric"] == "test_error")
    want = ["entk_init", f"{float(entk['alpha']):.2f}", f"[{float(entk['alpha_lo']):.2f},",
            f"{float(entk['alpha_hi']):.2f}]", "deficit", f"{float(entk['alpha_deficit']):.2f}"]
    assert any(line.split()[:6] == want for line in summary.splitlines())
    assert "table: results/tiny/summary/exponents.csv" in summary


def test_a_finished_run_moved_elsewhere_plans_nothing(tiny_run, tmp_path):
    # the run and its checkout moved together (as `mv` or `cp -p` would): no job is planned again
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(tiny_run, moved, symlinks=True)
    assert planned(in_tiny("-n", cwd=moved)) == {}


def in_tiny(*args, cwd, config=TINY):
    return snakemake("--configfile", str(config), *args, cwd=cwd, repo=cwd / "repo")


def planned(res) -> dict:
    """{rule: job count} from a dry run's job table."""
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = res.stdout + res.stderr
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("Job stats:"):].split("\n")[3:]
    jobs = {}
    for line in table:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tiny_run_outputs(tiny_run):
    out = tiny_run / "results" / "tiny"
    rows = _csv(out / "scaling" / "exponents.csv")
    assert {r["metric"] for r in rows} == {"test_error", "test_mse"}
    curves = {(r["method"], r["width"], r["kind"], r["ridge"], r["k"]) for r in rows}
    expected = {(m, "inf", "mean", r, "0") for m in ("infinite_ntk", "infinite_nngp") for r in ("0.001", "tuned")}
    for w in ("16", "32"):
        expected |= {("network", w, "", "", ""), ("network_best", w, "", "", ""), ("linearized", w, "mean", "", "0")}
        for r in ("0.001", "tuned"):  # the fixed ridge and the one chosen on validation data
            expected |= {("entk_init", w, "mean", r, "0"), ("entk_after", w, "mean", r, "16"),
                         ("entk_after_n", w, "mean", r, "")}
    assert curves == expected
    for r in rows:
        assert float(r["alpha_lo"]) <= float(r["alpha"]) <= float(r["alpha_hi"])
        if r["method"] in ("entk_init", "infinite_ntk"):
            assert float(r["alpha"]) > 0  # more data helps on digits
    kernel = np.load(out / "kernels" / "entk_init" / "w32" / "s0" / "mean.npy")
    assert kernel.shape == (64 + 60 + 100 + 128, 64 + 60 + 100 + 128)  # train rows, validation, test, pool
    np.testing.assert_allclose(kernel, kernel.T, rtol=1e-5, atol=1e-6)
    ntk_inf = np.load(out / "kernels" / "infinite_ntk" / "winf" / "s1" / "mean.npy")
    assert ntk_inf.shape == kernel.shape and ntk_inf.dtype == np.float64
    after = np.load(out / "kernels" / "entk_after_k16" / "w32" / "s0" / "mean.npy")
    assert after.shape == kernel.shape and not np.allclose(after, kernel, rtol=1e-3)  # training moved it
    assert np.load(out / "kernels" / "entk_after_n32" / "w32" / "s0" / "mean.npy").shape == (32 + 288, 32 + 288)
    selected = [r for r in _csv(out / "scaling" / "metrics.csv") if r["metric"] == "selected_ridge"]
    assert selected and {float(r["value"]) for r in selected} <= {0.0, 0.001, 0.1} and all(
        r["ridge"] == "tuned" for r in selected)
    metrics = _csv(out / "scaling" / "metrics.csv")
    spectral = {"spectrum_b", "spectrum_b_lo", "spectrum_b_hi", "target_a", "target_a_lo", "target_a_hi",
                "alpha_powerlaw", "alignment_top10"}  # one row per kernel, at n = the spectrum's rows
    curves = [r for r in metrics if r["metric"] not in spectral]
    assert {(r["seed"], r["n"]) for r in curves} == {(s, n) for s in "01" for n in ("16", "32", "64")}
    assert {r["n"] for r in curves if r["method"] == "entk_after_n"} == {"16", "32", "64"}
    # the spectrum's rows: 60 validation + 128 pool rows, and the training rows the kernel's network did not
    # train on: all 64 at init and for infinite kernels, 48 after k = 16, none for the kernels trained on n
    spectrum_rows = {(r["method"], r["n"]) for r in metrics if r["metric"] in spectral}
    assert {n for _, n in spectrum_rows} == {"252", "236", "188"}
    assert {n for m, n in spectrum_rows if m == "entk_after"} == {"236"}
    assert {n for m, n in spectrum_rows if m == "entk_after_n"} == {"188"}
    for fig in ("data_scaling", "after_kernel", "kernel_evolution", "width_scaling", "theory"):
        for ext in ("pdf", "png"):
            assert (out / "figures" / f"{fig}.{ext}").stat().st_size > 1000
    log = (tiny_run / "logs" / "tiny" / "train" / "w32_s0_n16.log").read_text()
    assert log.count("done:") == 1 and "network_best (step" in log


def test_tiny_run_theory_beside_measurement(tiny_run):
    """Each kernel's spectrum and what it predicts: on real kernels (digits) the predicted test MSE is within
    25% of the measured one where the theory is trusted (n <= a quarter of the spectrum's 252 rows: 64
    training, 60 validation and 128 pool rows)."""
    out = tiny_run / "results" / "tiny"
    spectrum = _csv(out / "regression" / "infinite_ntk" / "winf" / "s0" / "mean" / "spectrum.csv")
    assert [int(r["mode"]) for r in spectrum] == list(range(1, 253))
    eigenvalues = [float(r["eigenvalue"]) for r in spectrum]
    assert eigenvalues == sorted(eigenvalues, reverse=True) and eigenvalues[-1] >= 0
    assert float(spectrum[0]["tail"]) == pytest.approx(0.1, rel=1e-9)  # one-hot targets: power 1/C per output
    values = {}
    for r in _csv(out / "scaling" / "metrics.csv"):
        if r["metric"] in ("test_mse", "predicted_test_mse") and r["kind"] == "mean" and r["method"] != "linearized":
            key = (r["method"], r["width"], r["seed"], r["ridge"], r["n"])
            values.setdefault(key, {})[r["metric"]] = float(r["value"])
    trusted = [v["predicted_test_mse"] / v["test_mse"] for (m, w, s, ridge, n), v in values.items()
               if int(n) <= 252 // 4 and m != "entk_after_n"]
    # n = 16, 32: (entk_init, entk_after_k16) x 2 widths + 2 infinite kernels, x 2 seeds x 2 ridges
    assert len(trusted) == 2 * (2 * 2 + 2) * 2 * 2 and all(0.8 < ratio < 1.25 for ratio in trusted), trusted
    summary = _csv(out / "summary" / "exponents.csv")
    kernels = [r for r in summary if r["metric"] == "test_mse"
               and r["method"] not in ("network", "network_best", "linearized")]
    assert kernels and all(float(r["alpha_predicted"]) > 0 for r in kernels)
    # spectrum rows: 252 but for the after-kernel, whose network trained on 16 of them (236)
    assert {r["method"]: float(r["spectrum_rows"]) for r in kernels if r["method"] in ("entk_init", "entk_after")} \
        == {"entk_init": 252, "entk_after": 236}
    for r in kernels:
        assert float(r["alpha_gap"]) == pytest.approx(float(r["alpha"]) - float(r["alpha_predicted"]))
    assert all(r["alpha_predicted"] == "" for r in summary if r["method"] == "network" or r["metric"] == "test_error")


def test_tiny_run_kernel_evolution(tiny_run):
    rows = _csv(tiny_run / "results" / "tiny" / "evolution" / "evolution.csv")
    assert {(r["width"], r["seed"], r["n"]) for r in rows} == {(w, s, "64") for w in ("16", "32") for s in "01"}
    for w in ("16", "32"):
        mine = [r for r in rows if r["width"] == w and r["seed"] == "0" and r["method"] == "entk_checkpoint"]
        steps = sorted({int(r["step"]) for r in mine})
        assert steps[0] == 0 and steps[-1] == 40 and len(steps) >= 5  # train.steps, log + epoch points
        value = {(int(r["step"]), r["metric"]): float(r["value"]) for r in mine}
        assert value[(0, "distance_init")] == pytest.approx(0, abs=1e-9)
        assert value[(40, "distance_final")] == pytest.approx(0, abs=1e-9)
        assert 0 < value[(40, "distance_init")] <= 1
        for s in steps[1:]:
            assert value[(s, "velocity_step")] >= 0 and (s, "test_error") in value
        # the spectrum at every checkpoint: its decay, and the label power in its 10 leading modes
        assert all(value[(s, "spectrum_b")] > 0 and 0 < value[(s, "alignment_top10")] <= 1 for s in steps)
        network = [r for r in rows if r["width"] == w and r["seed"] == "0" and r["method"] == "network"]
        assert set(steps) <= {int(r["step"]) for r in network}  # the network's own error at each checkpoint


def test_tiny_run_width_distance_and_summary(tiny_run):
    out = tiny_run / "results" / "tiny"
    dist = _csv(out / "width" / "distance.csv")
    rel = {(r["width"], r["seed"]): float(r["value"]) for r in dist if r["metric"] == "relative_distance_infinite"}
    assert set(rel) == {(w, s) for w in ("16", "32") for s in "01"}
    assert all(0 < v < 2 for v in rel.values())
    lazy = {(r["width"], r["seed"], r["metric"]): float(r["value"]) for r in dist if r["metric"].startswith("prediction")}
    assert set(lazy) == {(w, s, f"prediction_distance_{m}") for w in ("16", "32") for s in "01"
                         for m in ("entk_init", "infinite_ntk", "linearized")}
    assert all(0 < v < 10 for v in lazy.values())
    summary = _csv(out / "summary" / "exponents.csv")
    entk = [r for r in summary if r["method"] == "entk_init" and r["metric"] == "test_error"]
    assert len(entk) == 2
    for r in entk:
        assert r["ridge"] == "tuned" and r["network_method"] == "network_best"
        assert float(r["alpha_deficit"]) == pytest.approx(float(r["network_alpha"]) - float(r["alpha"]))
        assert float(r["deficit_lo"]) <= float(r["alpha_deficit"]) <= float(r["deficit_hi"])
        assert r["network_width"] == r["width"]
    import json
    prov = json.loads((out / "summary" / "provenance.json").read_text())
    tiny = yaml.safe_load(TINY.read_text())
    assert prov["config"]["sample_sizes"] == tiny["sample_sizes"] and prov["config"]["seeds"] == tiny["seeds"]
    assert prov["torch"] and prov["snakemake"]
    from ntkscaling.files import code_version
    assert prov["code_version"] == code_version()
    kernel_meta = json.loads((out / "kernels" / "entk_init" / "w16" / "s1" / "mean.json").read_text())
    assert kernel_meta["seed"] == 1 and kernel_meta["provenance"]["code_version"] == prov["code_version"]


def test_report(tiny_run):
    res = in_tiny("--report", "report.html", cwd=tiny_run)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    html = (tiny_run / "report.html").read_text()
    for name in ("data_scaling.pdf", "after_kernel.pdf", "kernel_evolution.pdf", "width_scaling.pdf",
                 "After-kernels", "Kernel evolution", "Width scaling"):
        assert name in html, name
    # the summary table is embedded whole (a base64 data URI)
    match = re.search(r"data:text/csv;charset=utf8;filename=exponents.csv;base64,([A-Za-z0-9+/=]+)", html)
    assert match, "summary table missing from the report"
    table = base64.b64decode(match.group(1)).decode()
    assert table == (tiny_run / "results" / "tiny" / "summary" / "exponents.csv").read_text()


def test_first_run_preset_is_the_tiny_run():
    """The README's one-minute first run (config/presets/first-run.yaml) is the tiny config these tests run
    end to end, under its own name: every key equal once the schema's defaults are filled in."""
    from ntkscaling.pipeline.config import validate
    first = validate(yaml.safe_load((ROOT / "config" / "presets" / "first-run.yaml").read_text()))
    tiny = validate(yaml.safe_load(TINY.read_text()))
    assert first["run_name"] == "first-run" and {**first, "run_name": "tiny"} == tiny


def test_documented_publish_command_publishes_a_finished_run(tiny_run):
    """docs/results.md's `python -m ntkscaling.publish results/<run_name>`, as written, on the tiny run."""
    res = subprocess.run([sys.executable, "-m", "ntkscaling.publish", "results/tiny"], cwd=tiny_run,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(tiny_run / "repo" / "src")})
    assert res.returncode == 0, res.stderr[-3000:]
    dest = tiny_run / "docs" / "results" / "tiny"
    assert re.match(r"published (\d+) files of results/tiny to docs/results/tiny", res.stdout)
    prov = json.loads((dest / "provenance.json").read_text())
    assert (dest / "summary" / "exponents.csv").read_bytes() == \
        (tiny_run / "results" / "tiny" / "summary" / "exponents.csv").read_bytes()
    assert set(prov["files"]) >= {"summary/exponents.csv", "figures/data_scaling.png"}


def test_a_run_with_a_live_writer_elsewhere_starts_no_job(tiny_run):
    """A Snakemake whose run another process writes (here: one holding results/tiny's writer lock, as a
    Snakemake of a second checkout sharing results/ would) stops before its first job, naming the holder."""
    target = "results/tiny/figures/theory.png"
    before = (tiny_run / target).stat().st_mtime_ns
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom ntkscaling import jobs\n"
                               "jobs.claim_run('results/tiny')\nprint('held', flush=True)\ntime.sleep(120)\n"],
                              cwd=tiny_run, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(tiny_run / "repo" / "src")})
    try:
        assert holder.stdout.readline().strip() == "held"
        res = in_tiny("--forcerun", "figure_theory", target, cwd=tiny_run)
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode != 0
    assert f"another Snakemake is writing this run (process {holder.pid} on" in res.stdout + res.stderr
    assert (tiny_run / target).stat().st_mtime_ns == before


def test_second_run_has_nothing_to_do(tiny_run):
    assert planned(in_tiny("-n", cwd=tiny_run)) == {}


def _tiny_with(tmp_path, edit):
    cfg = yaml.safe_load(TINY.read_text())
    edit(cfg)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# Only what a change makes stale re-runs. The tiny run has widths 16, 32; seeds 0, 1; n 16, 32, 64; after-kernel
# k 16 and k = n; one kind (mean); infinite kernels; kernel evolution of the n = 64 networks.
FITS = {"collect_metrics": 1, "fit_exponents": 1, "summarize_exponents": 1, "figure_data_scaling": 1,
        "figure_after_kernel": 1, "figure_width_scaling": 1, "figure_theory": 1, "all": 1}
FITTED = {k: v for k, v in FITS.items() if k != "collect_metrics"}  # downstream of the fits
EVOLUTION = {"collect_evolution": 1, "figure_kernel_evolution": 1, "all": 1}
WIDTH = {"collect_width_distance": 1, "figure_width_scaling": 1, "all": 1}
ALL_AGGREGATES = {**FITS, **EVOLUTION, **WIDTH}
ENTK_TAGS = 5  # entk_init, entk_after_k16, entk_after_n16/32/64


def _jobs(**counts):
    return {rule: n for rule, n in counts.items() if n}


CONFIG_CHANGES = {
    # one more width: its networks, kernels, regressions, tracked run and width distances; never the
    # infinite kernels, the data or the other widths' jobs
    "add a width": (lambda c: c["model"].update(widths=[16, 32, 24]), _jobs(
        train_network=2 * 3, init_checkpoint=2, entk_kernel=ENTK_TAGS * 2, regress_kernel=ENTK_TAGS * 2,
        linearize=2, track_network=2, kernel_evolution=2, width_distance=2, **ALL_AGGREGATES)),
    # one more seed: everything of that seed (its order, infinite kernel and width distances too)
    "add a seed": (lambda c: c.update(seeds=[0, 1, 2]), _jobs(
        subset_order=1, train_network=2 * 3, init_checkpoint=2, entk_kernel=ENTK_TAGS * 2, infinite_kernel=1,
        regress_kernel=ENTK_TAGS * 2 + 2, linearize=2, track_network=2, kernel_evolution=2, width_distance=1,
        **ALL_AGGREGATES)),
    # one more n (not the largest): its networks and k=n kernels; kernels serving every n regress again
    "add an n": (lambda c: c.update(sample_sizes=[16, 32, 48, 64]), _jobs(
        train_network=2 * 2, entk_kernel=2 * 2, regress_kernel=(3 + 1) * 2 * 2, linearize=4, width_distance=2,
        **{**FITS, **WIDTH})),
    "add an after-kernel k": (lambda c: c["after_kernel"].update(ks=[16, 32]), _jobs(
        entk_kernel=2 * 2, regress_kernel=2 * 2, **FITS)),
    # tracking one more n: its tracked runs and evolutions only; no network of the scaling curves re-trains
    "track one more network": (lambda c: c["evolution"].update(sample_sizes=[32, 64]), _jobs(
        track_network=2 * 2, kernel_evolution=2 * 2, **EVOLUTION)),
    "change the evolution schedule": (lambda c: c["evolution"].update(log_checkpoints=4), _jobs(
        track_network=2 * 2, kernel_evolution=2 * 2, **EVOLUTION)),
    "change ridges": (lambda c: c["kernel"].update(ridges=[0.001, 0.1]), _jobs(
        regress_kernel=ENTK_TAGS * 4 + 2 * 2, **FITS)),
    "change a fit setting": (lambda c: c["fit"].update(bootstrap=60), _jobs(**FITTED)),
    "change a theory setting": (lambda c: c.setdefault("theory", {}).update(top_k=5), _jobs(
        regress_kernel=ENTK_TAGS * 4 + 2 * 2, kernel_evolution=4, **{**FITS, **EVOLUTION})),
    # other pool rows: every mean-kind kernel (never a network, the data or kernel evolution's kernels) and what
    # reads them
    "change the pool": (lambda c: c["theory"].update(pool=64), _jobs(
        entk_kernel=ENTK_TAGS * 4, infinite_kernel=2, regress_kernel=ENTK_TAGS * 4 + 2 * 2, linearize=4,
        width_distance=2, **{**FITS, **WIDTH})),
    "change a figure setting": (lambda c: c["fit"].update(figure_width=16), _jobs(
        figure_data_scaling=1, figure_after_kernel=1, figure_theory=1, all=1)),
    "change the figures' ridge": (lambda c: c["fit"].update(figure_ridge=0.001), _jobs(
        summarize_exponents=1, figure_data_scaling=1, figure_after_kernel=1, figure_width_scaling=1,
        figure_theory=1, all=1)),
    "change the unused epoch budget": (lambda c: c["train"].update(epochs=7), {}),
    "change the job caps": (lambda c: c.update(max_job_mem_mb=3000, gpus_per_job=1), {}),
}


@pytest.mark.parametrize("change", list(CONFIG_CHANGES))
def test_a_config_change_reruns_only_what_it_makes_stale(tiny_run, tmp_path, change):
    edit, expected = CONFIG_CHANGES[change]
    assert planned(in_tiny("-n", cwd=tiny_run, config=_tiny_with(tmp_path, edit))) == expected


KERNEL_JOBS = dict(entk_kernel=ENTK_TAGS * 4, regress_kernel=ENTK_TAGS * 4, kernel_evolution=4, width_distance=2,
                   linearize=4)
CODE_EDITS = {  # one library module of each kind, and every job that imports it (directly or not)
    "plotting.py": _jobs(figure_data_scaling=1, figure_after_kernel=1, figure_width_scaling=1, figure_theory=1,
                         figure_kernel_evolution=1, all=1),
    "analysis/scaling.py": _jobs(**FITTED),
    "analysis/regression.py": _jobs(regress_kernel=ENTK_TAGS * 4 + 2 * 2, kernel_evolution=4, width_distance=2,
                           **ALL_AGGREGATES),
    "kernels/empirical/api.py": _jobs(**KERNEL_JOBS, **ALL_AGGREGATES),
    "kernels/infinite/api.py": _jobs(infinite_kernel=2, regress_kernel=2 * 2, width_distance=2, **{**FITS, **WIDTH}),
    "training/run.py": _jobs(train_network=12, track_network=4, init_checkpoint=4, **KERNEL_JOBS, **ALL_AGGREGATES),
}


@pytest.mark.parametrize("module", list(CODE_EDITS))
def test_editing_a_library_module_reruns_only_the_jobs_that_import_it(tiny_run, module):
    path = tiny_run / "repo" / "src" / "ntkscaling" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        jobs = planned(in_tiny("-n", cwd=tiny_run))
    finally:
        path.write_text(original)
    assert jobs == CODE_EDITS[module]
    assert planned(in_tiny("-n", cwd=tiny_run)) == {}  # reverting the edit makes everything current again


def test_deleting_a_figure_recreates_just_that_figure(tiny_run):
    pdf = tiny_run / "results" / "tiny" / "figures" / "width_scaling.pdf"
    pdf.unlink()
    assert planned(in_tiny("-n", cwd=tiny_run)) == {"figure_width_scaling": 1, "all": 1}
    res = in_tiny(cwd=tiny_run)
    assert res.returncode == 0 and pdf.stat().st_size > 1000
    assert planned(in_tiny("-n", cwd=tiny_run)) == {}


def smaller(config):
    """The tiny config with one seed, one width and no k=n after-kernels: fewer jobs, shorter tests."""
    config.update(seeds=[0])
    config["model"]["widths"] = [16]
    config["after_kernel"]["at_n"] = False


def _run_sh(repo, *args, **kw):
    """The README's main command as written (./run.sh, extra arguments to snakemake) in a copy of the
    checkout, with the checkout's environment (envs/setup.sh finds it current and installs nothing)."""
    env = {**os.environ, "NTKSCALING_VENV": str(ROOT / ".venv")}
    return subprocess.Popen(["./run.sh", *args], cwd=repo, env=env, **kw)


def test_killed_run_resumes_with_the_readme_command_and_gives_the_same_numbers(tiny_run, tmp_path):
    import signal
    import time
    if not venv_is_current():
        pytest.skip("the checkout's .venv is not current: run the suite through ./test.sh")
    repo = copy_repo(tmp_path / "repo")
    for name in ("run.sh", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    config = _tiny_with(tmp_path, smaller)
    args = ("--configfile", str(config), "--cores", "2")
    proc = _run_sh(repo, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    train_logs = repo / "logs" / "tiny" / "train"
    finished = []
    t0 = time.time()
    while not finished and time.time() - t0 < 300:
        time.sleep(0.2)
        finished = [p for p in train_logs.glob("*.log") if "done:" in p.read_text()] if train_logs.exists() else []
    # let Snakemake record the finished job (its metadata, named by the output's path in base64: on a loaded
    # machine that takes more than a few seconds), then kill the whole run (jobs too) mid-training
    import base64
    metadata = repo / ".snakemake" / "metadata"
    outputs = [f"results/tiny/train/{p.stem.replace('_', '/')}/metrics.csv" for p in finished]
    names = {enc(o.encode()).decode() for o in outputs for enc in (base64.urlsafe_b64encode, base64.b64encode)}
    while not (metadata.is_dir() and names & {p.name for p in metadata.iterdir()}) and time.time() - t0 < 400:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished and not (repo / "results" / "tiny" / "scaling" / "exponents.csv").exists()
    assert list((repo / ".snakemake" / "locks").iterdir())  # the killed run left its lock behind
    done = {p.stem: (repo / "results" / "tiny" / "train" / p.stem.replace("_", "/") / "metrics.csv")
            for p in finished}
    stamps = {k: p.stat().st_mtime_ns for k, p in done.items()}
    run = _run_sh(repo, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-4000:]
    assert "lifting the lock left by an interrupted run" in out
    assert {k: p.stat().st_mtime_ns for k, p in done.items()} == stamps  # finished jobs were not redone
    assert not list((repo / "results").rglob("*.tmp"))  # no partial file left behind
    ours, theirs = repo / "results" / "tiny", tiny_run / "results" / "tiny"
    # every per-seed table equals the uninterrupted run's (tiny_run, which has seed 0 too)
    tables = [p.relative_to(ours) for p in ours.rglob("*.csv") if "/s0" in str(p) and "/width/" not in str(p)]
    assert len(tables) >= 8
    for rel in tables:
        assert (ours / rel).read_text() == (theirs / rel).read_text(), rel


CONSUMER = """configfile: "{config}"


module ntkscaling:
    snakefile:
        "{repo}/Snakefile"
    config:
        config


use rule * from ntkscaling as ntk_*


rule everything:
    input:
        rules.ntk_all.input,
    default_target: True
"""


def test_the_workflow_works_as_a_module_of_another_workflow(tiny_run, tmp_path):
    # another project's Snakefile, elsewhere, imports every rule; paths, scripts, code inputs and the schema
    # are found from the module itself
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "Snakefile").write_text(CONSUMER.format(config=TINY, repo=ROOT))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=consumer,
                              capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ""})
    jobs = planned(run("-n"))
    assert jobs.pop("everything") == 1
    ours = planned(in_tiny("-n", "-F", cwd=tiny_run))
    ours.pop("all")
    assert jobs == {f"ntk_{rule}": n for rule, n in ours.items()}  # the same DAG as the workflow run alone
    target = "results/tiny/regression/entk_init/w16/s0/mean/metrics.csv"
    res = run(target)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (consumer / target).read_text() == (tiny_run / target).read_text()  # and the same numbers


def test_uncentred_networks_are_compared_with_the_linearized_kernel_predictor(tiny_run, tmp_path):
    # model.center: false -> the regression of every eNTK gets its checkpoint network's outputs as f0
    def uncentred(config):
        smaller(config)
        config["model"]["center"] = False
    config = _tiny_with(tmp_path, uncentred)
    target = tmp_path / "results" / "tiny" / "regression" / "entk_init" / "w16" / "s0" / "mean" / "metrics.csv"
    evolution = tmp_path / "results" / "tiny" / "evolution" / "w16" / "s0" / "n64" / "mean.csv"
    res = snakemake(str(target.relative_to(tmp_path)), str(evolution.relative_to(tmp_path)), "--configfile",
                    str(config), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (tmp_path / "logs" / "tiny" / "regress_kernel" / "entk_init_w16_s0_mean.log").read_text()
    assert "predictor: linearized" in log
    assert "predictor: linearized" in (tmp_path / "logs" / "tiny" / "kernel_evolution" /
                                       "w16_s0_n64_mean.log").read_text()
    f0 = np.load(tmp_path / "results" / "tiny" / "kernels" / "entk_init" / "w16" / "s0" / "mean.outputs.npy")
    assert f0.shape == (64 + 60 + 100 + 128, 10) and np.abs(f0).max() > 0  # the untrained network's outputs
    centred = {(r["n"], r["ridge"], r["metric"]): r["value"] for r in _csv(
        tiny_run / "results" / "tiny" / "regression" / "entk_init" / "w16" / "s0" / "mean" / "metrics.csv")}
    mine = {(r["n"], r["ridge"], r["metric"]): r["value"] for r in _csv(target)}
    assert mine.keys() == centred.keys()
    assert mine[("64", "0.001", "test_mse")] != centred[("64", "0.001", "test_mse")]  # same kernel, f0 added
