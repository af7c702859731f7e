"""The documentation's examples run as written (in a scratch folder): the Python example (docs/python-api.md)
prints its exponents; the own-network example's file, config lines and command (docs/own-network.md) run the
workflow. The README stays within its size and links only to files that exist."""
import csv
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT


def test_readme_python_example_runs(tmp_path):
    text = (ROOT / "docs" / "python-api.md").read_text()
    section = text[text.index("## Using it from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr[-3000:]
    lines = re.findall(r"^(network_best|entk_init): alpha = (\S+) \[(\S+), (\S+)\]$", res.stdout, re.M)
    assert [m for m, *_ in lines] == ["network_best", "entk_init"]
    for _, alpha, lo, hi in lines:
        assert float(lo) <= float(alpha) <= float(hi) and float(alpha) > 0.2  # more data helps on digits
    assert re.search(r"^deficit = \S+ \[\S+, \S+\]$", res.stdout, re.M)


def _readme_section(title: str, page: str = "docs/own-network.md") -> str:
    text = (ROOT / page).read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:end if end > 0 else None]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


# The tiny config's sizes, smaller still (one width and seed, two n): the README's network, file and config
# lines run as written, in about a minute.
SMALLER = {"seeds": [0], "sample_sizes": [16, 32], "after_kernel": {"ks": [16], "at_n": False}}


@pytest.fixture(scope="module")
def readme_network_run(tmp_path_factory):
    """The README's own-network example: its file, its config lines over the tiny config, its command."""
    section = _readme_section("## Your own network in the workflow")
    [user_code], [config_lines], commands = _blocks(section, "python"), _blocks(section, "yaml"), _blocks(section, "bash")
    work = tmp_path_factory.mktemp("readme_network")
    factory_file = yaml.safe_load(config_lines)["model"]["factory"].split(":")[0]
    (work / factory_file).write_text(user_code)
    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    for source in (yaml.safe_load(config_lines), SMALLER, {"model": {"widths": [8]}}):
        for key, value in source.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    command = shlex.split(commands[0].strip())
    assert command[0] == "snakemake"
    config_file = command[command.index("--configfile") + 1]
    (work / config_file).write_text(yaml.safe_dump(config))
    res = _snakemake(command[1:], work)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return work, config, factory_file


def _snakemake(args, cwd):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


@pytest.mark.workflow
def test_readme_own_network_runs_through_the_workflow(readme_network_run):
    work, config, _ = readme_network_run
    results = work / "results" / config["run_name"]
    rows = list(csv.DictReader(open(results / "summary" / "exponents.csv")))
    assert {r["arch"] for r in rows} == {config["model"]["arch"]}
    assert {"network_best", "entk_init", "entk_after"} <= {r["method"] for r in rows}
    assert not any(r["method"].startswith("infinite") for r in rows)
    for figure in ("data_scaling", "after_kernel", "kernel_evolution", "width_scaling", "theory"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 1000
    meta = json.loads((results / "kernels" / "entk_init" / "w8" / "s0" / "mean.json").read_text())
    assert meta["engine"] == "general"
    log = (work / "logs" / config["run_name"] / "entk_kernel" / "entk_init_w8_s0_mean.log").read_text()
    assert "engine general (Sequential" in log
    ckpt = torch.load(results / "init" / "w8" / "s0.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["network"]["factory"] == config["model"]["factory"]


@pytest.mark.workflow
def test_editing_the_users_network_reruns_only_the_jobs_that_build_it(readme_network_run):
    work, _, factory_file = readme_network_run
    path, original = work / factory_file, (work / factory_file).read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        res = _snakemake(["--configfile", "my_network.yaml", "--cores", "2", "-n"], work)
    finally:
        path.write_text(original)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", text[text.index("Job stats:"):], re.M))
    # every job that builds the network (2 n + 1 tracked run, 1 width, 1 seed; kernels: init and k = 16)...
    assert {rule: int(jobs.get(rule, 0)) for rule in ("train_network", "track_network", "init_checkpoint",
                                                      "entk_kernel", "kernel_evolution")} == {
        "train_network": 2, "track_network": 1, "init_checkpoint": 1, "entk_kernel": 2, "kernel_evolution": 1}
    # ... and what depends on them, never the data
    assert "prepare_data" not in jobs and "subset_order" not in jobs and "regress_kernel" in jobs
    res = _snakemake(["--configfile", "my_network.yaml", "--cores", "2", "-n"], work)
    assert "Nothing to be done" in res.stdout + res.stderr  # the edit reverted: everything current again


@pytest.mark.workflow
def test_infinite_kernels_of_the_users_network_are_refused_before_any_job(readme_network_run):
    work, config, _ = readme_network_run
    (work / "infinite.yaml").write_text("kernel: {infinite: true}\n")
    res = _snakemake(["--configfile", "my_network.yaml", "infinite.yaml", "--cores", "2", "-n"], work)
    text = res.stdout + res.stderr
    assert res.returncode != 0 and "Job stats" not in text
    assert "config key 'kernel.infinite': true, but model.factory='my_networks.py:small_resnet' has no " \
           "infinite-width kernel: its layer 0 (Conv2d) has no infinite-width rule" in text


def test_readme_is_short_and_its_links_and_numbers_files_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local and all((ROOT / link).exists() for link in local), [l for l in local if not (ROOT / l).exists()]
    for page in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not link.startswith(("http://", "https://")):
                assert (page.parent / link).exists(), f"{page.name}: {link}"
