"""The package and its environment: declared dependencies cover every import, the conda environment stands
alone (Snakemake copies it without the files beside it), the installed package carries its schema, each
workflow script's code inputs are the library files it really imports, and job requests are sized from
the job."""
import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SRC = ROOT / "src" / "ntkscaling"
DISTRIBUTION = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml", "pytorch_lightning": "pytorch-lightning"}


def _third_party_imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("ntkscaling", "__future__")}


def _declared(requirements) -> set[str]:
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_pyproject_declares_every_package_the_code_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _declared(project["dependencies"])
    imported = set().union(*(_third_party_imports(p) for p in SRC.rglob("*.py")))
    assert {"torch", "numpy", "PIL", "pandas", "matplotlib"} <= imported  # the scan sees real imports
    missing = {DISTRIBUTION.get(n, n).lower() for n in imported} - declared
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    # the pins need Python 3.11 (numpy 2.4, pandas 3): the declared floor says so
    assert re.search(r">=\s*3\.(1[1-9])", project["requires-python"])


def test_conda_environment_stands_alone_with_every_pin():
    env = yaml.safe_load((ROOT / "envs" / "ntkscaling.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not [p for p in pip if p.startswith("-")], "a -r/-e line refers to a file Snakemake does not copy"
    assert pip[0] == "torch==2.13.0" and all("==" in p for p in pip)
    pinned = _declared(pip)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _declared(project["dependencies"]) <= pinned
    assert {"pytest", "snakemake-executor-plugin-slurm"} <= pinned
    # envs/setup.sh installs exactly this list (its sed extracts the same pins)
    out = subprocess.run(["sed", "-n", r"s/^      - \([A-Za-z0-9_.-]*==[^ ]*\)$/\1/p", "envs/ntkscaling.yaml"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert out == pip


def test_the_built_package_carries_its_schema_and_native_source(tmp_path):
    import shutil
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(source)], capture_output=True, text=True)
    if res.returncode != 0 and "setuptools" in res.stderr:
        pytest.skip(f"setuptools is not installed: {res.stderr[-300:]}")
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("ntkscaling-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ntkscaling/pipeline/schema.yaml", "ntkscaling/kernels/infinite/pairstep.c",
            "ntkscaling/pipeline/config.py", "ntkscaling/training/run.py"} <= names
    # installed elsewhere, the package reads the schema beside itself
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ntkscaling import config; "
            "assert config.SCHEMA_PATH.is_relative_to(sys.argv[1]), config.SCHEMA_PATH; "
            "c = config.validate({}, check_data=False); print(c['run_name'])")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "default", out.stderr[-2000:]


def _files(script):
    from ntkscaling.pipeline.code_inputs import library_files
    return {str(Path(p).relative_to(SRC)) for p in library_files(ROOT / "workflow" / "scripts" / f"{script}.py", SRC)}


def test_code_inputs_follow_imports_transitively():
    # entk_kernel imports data (and its planted tasks), the eNTK, io, tags, models; the eNTK imports its
    # engines, hostmem (and layers) and its argument checks; models the names of the built-in networks and the
    # ResNet (a function-level import); and the __init__.py of every package on the way
    assert _files("entk_kernel") == {
        "__init__.py", "arguments.py", "data/__init__.py", "data/facts.py", "data/labels.py", "data/formats.py",
        "data/preparation.py", "data/rows.py", "files.py", "jobs.py", "planted.py", "nets/__init__.py",
        "nets/archs.py",
        "nets/layers.py", "nets/models.py", "nets/resnet.py", "kernels/__init__.py", "kernels/empirical/__init__.py",
        "kernels/empirical/api.py", "kernels/empirical/blocks.py", "kernels/empirical/layerwise.py",
        "kernels/empirical/general.py", "kernels/empirical/hostmem.py", "pipeline/__init__.py", "pipeline/tags.py"}
    # the native module's C source is read (compiled) at run time: an input of the infinite kernels
    assert {"kernels/infinite/api.py", "kernels/infinite/blocks.py", "kernels/infinite/native.py",
            "kernels/infinite/pairstep.c", "nets/layers.py", "nets/models.py"} <= _files("infinite_kernel")
    # labels and plotting stay out of every kernel and training job
    for script in ("entk_kernel", "regress_kernel", "train_network", "infinite_kernel", "kernel_evolution",
                   "width_distance", "init_checkpoint"):
        assert "plotting.py" not in _files(script), script
    assert "plotting.py" in _files("plot_data_scaling")


# Each script's code inputs in the flat module names of 3029d1c (the layer description's argument checks: arguments
# since the checkpoint estimate; linearize since the linearized network).
FLAT_CODE_INPUTS = {
    "collect_metrics": "io methods",
    "entk_kernel": "archs arguments data entk entk_blocks entk_fast entk_jacobian hostmem io layers methods models "
                   "planted resnet",
    "fit_exponents": "arguments io methods scaling",
    "infinite_kernel": "archs arguments data infinite infinite_blocks io layers methods models native pairstep.c "
                       "planted resnet",
    "init_checkpoint": "archs arguments data io layers methods metrics models planted resnet training",
    "kernel_evolution": "archs arguments data entk entk_blocks entk_fast entk_jacobian evolution hostmem io layers "
                        "methods metrics models planted regression resnet theory training",
    "linearize": "archs arguments data io layers methods metrics models planted resnet training",
    "plot_after_kernel": "io methods plotting theory",
    "plot_data_scaling": "io methods plotting theory",
    "plot_kernel_evolution": "io methods plotting theory",
    "plot_sweep": "io methods plotting theory",
    "plot_theory": "arguments io methods plotting scaling theory",
    "plot_width_scaling": "io methods plotting theory",
    "prepare_data": "data io methods planted",
    "regress_kernel": "arguments data io methods planted regression theory",
    "subset_order": "data io methods planted",
    "summarize_exponents": "arguments io methods scaling",
    "sweep_outcome": "io methods sweep",
    "sweep_summary": "arguments io methods scaling sweep",
    "train_network": "archs arguments data io layers methods metrics models planted resnet training",
    "width_distance": "arguments data evolution io methods planted regression",
}


# What scripts depend on since: the kernel evolution's fixed-gap velocity pairs (training/settings.py)
SINCE = {"width_distance": {"training/settings.py", "analysis/losses.py"},
         # the summary flags predictions past the theory's trusted range (analysis/theory.TRUSTED_ROWS_PER_N)
         **{script: {"analysis/theory.py"} for script in ("fit_exponents", "summarize_exponents", "sweep_summary")}}


@pytest.mark.parametrize("script", sorted(FLAT_CODE_INPUTS))
def test_code_inputs_cover_the_same_source_as_before_the_subpackages(script):
    """The move into subpackages changed where code lives, not what each job depends on: each script's code
    inputs are its flat modules' new homes (ntkscaling.MOVED; training.py became training/, data.py data/, io.py
    files.py and jobs.py), plus the packages' __init__.py files."""
    from ntkscaling import MOVED
    assert sorted(p.stem for p in (ROOT / "workflow" / "scripts").glob("*.py")) == sorted(FLAT_CODE_INPUTS)
    want = set()
    for name in FLAT_CODE_INPUTS[script].split():
        if name == "training":
            want |= {str(p.relative_to(SRC)) for p in (SRC / "training").glob("*.py") if p.name != "__init__.py"}
        elif name == "pairstep.c":
            want.add("kernels/infinite/pairstep.c")
        elif name == "data":  # data.py became data/ (facts, labels, formats, preparation, rows)
            want |= {str(p.relative_to(SRC)) for p in (SRC / "data").glob("*.py") if p.name != "__init__.py"}
        elif name == "io":  # split in two: files, and jobs (a job's log and process control)
            want |= {"files.py", "jobs.py"}
        else:
            want.add(MOVED.get(name, name).replace(".", "/") + ".py")
    assert {f for f in _files(script) if not f.endswith("__init__.py")} == want | SINCE.get(script, set())


def test_code_inputs_see_function_level_and_aliased_imports(tmp_path):
    from ntkscaling.pipeline.code_inputs import library_files
    pkg = tmp_path / "ntkscaling"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g()\n")
    (pkg / "b.py").write_text("from . import c as renamed\nimport os\n")
    (pkg / "c.py").write_text("x = 1\n")
    (pkg / "unused.py").write_text("")
    script = tmp_path / "script.py"
    script.write_text("import numpy\nfrom ntkscaling import a\n")
    found = {p.rsplit("/", 1)[1] for p in library_files(script, pkg)}
    assert found == {"__init__.py", "a.py", "b.py", "c.py"}


def test_code_inputs_walk_subpackages(tmp_path):
    """A subpackage imported whole brings every module in it (its public names may load any of them); a
    module imported from inside one brings its own imports and the __init__.py files above it, not its
    siblings; `..` imports climb to the parent package."""
    from ntkscaling.pipeline.code_inputs import library_files
    pkg = tmp_path / "ntkscaling"
    for folder in (pkg, pkg / "train", pkg / "kernels", pkg / "kernels" / "deep"):
        folder.mkdir()
        (folder / "__init__.py").write_text("")
    (pkg / "train" / "settings.py").write_text("from ..light import x\n")
    (pkg / "train" / "run.py").write_text("import torch\nfrom .settings import y\n")
    (pkg / "light.py").write_text("x = 1\n")
    (pkg / "kernels" / "deep" / "api.py").write_text("from ...light import x\nfrom .. import helper\n")
    (pkg / "kernels" / "helper.py").write_text("")
    (pkg / "kernels" / "unused.py").write_text("")
    found = {}
    for name, text in (("light_job", "from ntkscaling.train.settings import step_budget\n"),
                       ("train_job", "from ntkscaling import train\n"),
                       ("kernel_job", "from ntkscaling.kernels.deep import api\n")):
        script = tmp_path / f"{name}.py"
        script.write_text(text)
        found[name] = {str(Path(p).relative_to(pkg)) for p in library_files(script, pkg)}
    assert found["light_job"] == {"__init__.py", "train/__init__.py", "train/settings.py", "light.py"}
    assert found["train_job"] == {"__init__.py", "train/__init__.py", "train/settings.py", "train/run.py",
                                  "light.py"}
    assert found["kernel_job"] == {"__init__.py", "kernels/__init__.py", "kernels/deep/__init__.py",
                                   "kernels/deep/api.py", "kernels/helper.py", "light.py"}


def test_code_version_covers_every_source_file_of_the_package(tmp_path):
    """Editing any library file (a subpackage's module, the native kernel's C source, the schema) changes
    the code version recorded in every output's provenance (on a copy of the package)."""
    import shutil
    from ntkscaling import files
    copy = tmp_path / "ntkscaling"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = files.code_version(copy)
    assert before == files.code_version()
    for name in ("training/run.py", "kernels/infinite/native.py", "kernels/infinite/pairstep.c",
                 "pipeline/schema.yaml"):
        path = copy / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert files.code_version(copy) != before, name
        path.write_bytes(original)
    assert files.code_version(copy) == before


def test_job_requests_are_sized_from_the_job_and_capped():
    from ntkscaling.pipeline import jobsize
    assert jobsize.kernel_mb(1000) == pytest.approx(4.0)  # 1000^2 float32 entries
    assert jobsize.kernel_mb(1000, outputs=10, bytes_per_entry=8) == pytest.approx(800.0)
    small, big = jobsize.entk_mem_mb(1_000), jobsize.entk_mem_mb(50_000)
    assert small < 5_000 and big > 2 * jobsize.kernel_mb(50_000)  # the kernel twice fits in the request
    assert jobsize.capped(1000.2, 1, None) == 1001 and jobsize.capped(1000, 3, None) == 3000
    assert jobsize.capped(1000, 3, 2500) == 2500
    assert jobsize.train_minutes(50_000) > 10 * jobsize.train_minutes(40)  # paper-scale runs ask for hours
    assert jobsize.kernel_threads(100) == 1 and jobsize.kernel_threads(100, small=2) == 2
    assert jobsize.kernel_threads(10_000) == jobsize.MOST_THREADS


def test_pipeline_and_data_never_import_torch():
    """The Snakefile and every light job read these: importing torch there would cost seconds per call."""
    light = sorted({f"ntkscaling.{sub}.{p.stem}" for sub in ("pipeline", "data") for p in (SRC / sub).glob("*.py")} |
                   {"ntkscaling.planted", "ntkscaling.files", "ntkscaling.jobs", "ntkscaling.nets.archs",
                    "ntkscaling.training.settings", "ntkscaling.console"})
    code = (f"import importlib, sys\nfor m in {light!r}:\n    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]" and {"ntkscaling.pipeline.config", "ntkscaling.data.formats"} <= set(light)


def test_the_modules_keep_their_names_from_before_the_subpackages():
    """`from ntkscaling import entk`, `import ntkscaling.models` and `from ntkscaling.regression import ...`
    give the very modules that moved (one object, not a copy), and the package's public functions are theirs."""
    import importlib
    import ntkscaling
    for old, new in ntkscaling.MOVED.items():
        moved = importlib.import_module(f"ntkscaling.{new}")
        assert importlib.import_module(f"ntkscaling.{old}") is moved, old
        assert moved.__spec__.name == f"ntkscaling.{new}" and (SRC / (new.replace(".", "/") + ".py")).is_file()
    from ntkscaling import entk
    from ntkscaling.regression import kernel_regression
    assert entk.empirical_ntk is ntkscaling.empirical_ntk and kernel_regression is ntkscaling.kernel_regression
    assert ntkscaling.train_network is importlib.import_module("ntkscaling.training.run").train_network


def test_kernel_evolution_reads_checkpoints_without_lightning():
    """Importing Lightning costs a job about 5 s (12% of a default kernel-evolution job, profiled): the
    checkpoint listing it needs lives apart from the training run."""
    code = ("import sys\nfrom ntkscaling import training\ntraining.run_checkpoints, training.saved_checkpoint_steps\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"
