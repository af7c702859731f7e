"""Every command the documentation gives is run by a test, as written.

The commands are read from the pages themselves (fenced bash blocks and inline code that starts like a
command), so a command added to a page without a test fails here. Each one is either run in this module,
against a copy of the workflow (the workflow commands as dry runs: they must parse, find their config files
and plan jobs; the long runs themselves are the published results' business), or by the named test that
runs it for real (the tiny run's report, the own-network run, the Python example, ...).
"""
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, venv_is_current

PAGES = ["README.md", "config/README.md", "benchmarks/README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
COMMAND_START = r"(?:\./run\.sh|\./test\.sh|snakemake |python3? (?:-m |benchmarks/)|pip install|source |rm |squeue|sbatch)"


def documented_commands() -> dict[str, list[str]]:
    """{command: pages that give it}: each line of a fenced bash block and each inline code span that starts
    like a command, without its trailing comment, split at `&&`."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        text = (ROOT / page).read_text()
        lines = [line for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S) for line in block.splitlines()]
        fences_removed = re.sub(r"```.*?```", "", text, flags=re.S)
        lines += [span for span in re.findall(r"`([^`\n]+)`", fences_removed) if re.match(COMMAND_START, span)]
        for line in lines:
            line = re.sub(r"\s+#.*$", "", line).strip()
            for command in filter(None, (part.strip() for part in line.split("&&"))):
                found.setdefault(command, []).append(page)
    return found


# Run elsewhere, for real: (command pattern, the test that runs it, as "file::function").
RUN_BY = [
    (r"\./test\.sh.*", "test_doc_commands.py::test_documented_test_commands_select_tests"),
    (r"snakemake --lint", "test_workflow_checks.py::test_dry_run_and_lint_of_default_config"),
    (r"snakemake --report report\.html", "test_workflow.py::test_report"),
    (r"rm results/default/figures/width_scaling\.pdf", "test_workflow.py::test_deleting_a_figure_recreates_just_that_figure"),
    (r"snakemake --configfile my_network\.yaml --cores 2", "test_readme.py::test_readme_own_network_runs_through_the_workflow"),
    (r"python -m ntkscaling\.publish .*", "test_workflow.py::test_documented_publish_command_publishes_a_finished_run"),
    (r"python -m ntkscaling\.config_reference", "test_config_reference.py::test_the_documented_command_writes_the_reference"),
    (r"python -m ntkscaling\.calibration .*", "test_scaling.py::test_calibration_command_writes_its_table"),
    (r"squeue -u \$USER", "test_slurm.py::test_tiny_config_runs_through_slurm"),
]
# Set-up steps, not behaviour of this project: run by CI's own set-up or needing what CI does not install.
NOT_RUN = {
    "pip install -e .": "envs/setup.sh runs it at the start of every ./test.sh, hence of every CI run",
    "source .venv/bin/activate": "the environment ./test.sh creates; every command here runs in it",
    'pip install jax==0.4.30 jaxlib==0.4.30 neural-tangents==0.6.5 "numpy<2"':
        "the optional reference library of benchmarks/nt_myrtle5.py (a separate environment)",
}
# Everything else that starts with ./run.sh or snakemake is dry-run here. Placeholders in the pages and the
# files they stand for.
PLACEHOLDERS = {"PRESET": "config/presets/cifar10-cpu.yaml", "OVERLAY": "config/overlays/cifar10-8x8-npz.yaml"}


def _run_by(command: str):
    return next((test for pattern, test in RUN_BY if re.fullmatch(pattern, command)), None)


def _dry_run_commands() -> list[str]:
    return sorted(c for c in documented_commands() if c not in NOT_RUN and _run_by(c) is None)


def _plan_key(command: str) -> tuple:
    """What a dry run of `command` checks: its program and arguments, less the core count and dry-run flag
    (`snakemake --cores 2` and `snakemake --cores 4 -n` plan the same jobs)."""
    words = [PLACEHOLDERS.get(w, w) for w in shlex.split(command)]
    kept, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w == "--cores":
            skip = True
        elif w != "-n":
            kept.append(w)
    return tuple(kept)


def test_every_documented_command_is_run_by_a_test():
    commands = documented_commands()
    assert len(commands) > 20, sorted(commands)  # the pages were read
    for command in _dry_run_commands():
        assert re.match(r"(\./run\.sh|snakemake)( |$)", command), \
            f"{command!r} ({commands[command]}): no test runs it; add it to RUN_BY or run it here"
    for pattern, test in RUN_BY:
        file, name = test.split("::")
        assert re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M), f"{test} does not exist"
        assert any(re.fullmatch(pattern, c) for c in commands), f"{pattern!r} matches no documented command"
    assert set(NOT_RUN) <= set(commands)


def scratch_checkout(repo):
    """The workflow's files in a scratch checkout (links), with the files the pages' examples name."""
    repo.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "profiles", "config", "envs", "src", "run.sh", "pyproject.toml"):
        (repo / name).symlink_to(ROOT / name)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    (repo / "my.yaml").write_text(yaml.safe_dump({**config, "run_name": "my"}))  # "./run.sh --configfile my.yaml"
    return repo


def _dry_run(key: tuple, repo):
    program, args = key[0], list(key[1:])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NTKSCALING_VENV": str(ROOT / ".venv")}
    dry = [] if "--unlock" in args else ["-n"]
    cmd = ["./run.sh" if program == "./run.sh" else sys.executable, *([] if program == "./run.sh" else
           ["-m", "snakemake"]), *args, *dry]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.workflow
def test_documented_workflow_commands_plan_their_jobs(tmp_path):
    """Every ./run.sh and snakemake command of the pages, as a dry run in a scratch checkout: it parses, finds
    its config files, profiles and data, and plans jobs (or, for --unlock, succeeds). Commands that differ
    only in --cores or -n plan the same jobs and run once."""
    from concurrent.futures import ThreadPoolExecutor
    if not venv_is_current():
        pytest.skip("the checkout's .venv is not current: run the suite through ./test.sh")
    keys = sorted({_plan_key(c) for c in _dry_run_commands()})
    assert len(keys) >= 10 and ("./run.sh",) in keys and ("snakemake",) in keys
    # the CIFAR-10 overlay reads ../shared/data/cifar10-8x8.npz beside the checkout (there in CI)
    shared = ROOT.parent / "shared"
    if (shared / "data" / "cifar10-8x8.npz").is_file():
        (tmp_path / "shared").symlink_to(shared)
    else:
        keys = [k for k in keys if not any("cifar10-8x8-npz" in w for w in k)]
    # each dry run is one process, in its own checkout (one ./run.sh per checkout): two at a time on two cores
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(keys, pool.map(lambda i: _dry_run(keys[i], scratch_checkout(tmp_path / str(i))),
                                          range(len(keys)))))
    failed = {}
    for key, res in results.items():
        out = res.stdout + res.stderr
        planned = "--unlock" in key or "Job stats:" in out or "Nothing to be done" in out
        if res.returncode != 0 or not planned:
            failed[" ".join(key)] = out[-1500:]
    assert not failed, "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())


def test_documented_test_commands_select_tests():
    """Each ./test.sh command as written, collecting only (running the suite inside itself would recurse):
    it sets up (finding .venv current) and selects tests."""
    if not venv_is_current():
        pytest.skip("the checkout's .venv is not current: run the suite through ./test.sh")
    from concurrent.futures import ThreadPoolExecutor
    commands = sorted(c for c in documented_commands() if c.startswith("./test.sh"))
    assert "./test.sh" in commands

    def collect(command):
        return subprocess.run(["./test.sh", *shlex.split(command)[1:], "--collect-only", "-p", "no:cacheprovider"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(2) as pool:  # each collection imports the suite: two at a time on two cores
        results = list(pool.map(collect, commands))
    for command, res in zip(commands, results):
        assert res.returncode == 0, f"{command}\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
        assert re.search(r"^\d+(/\d+)? tests? (collected|selected)", res.stdout, re.M), res.stdout[-1000:]
