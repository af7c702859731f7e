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
    imported = set().union(*(_third_party_imports(p) for p in SRC.glob("*.py")))
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
    assert {"ntkscaling/schema.yaml", "ntkscaling/pairstep.c", "ntkscaling/config.py"} <= names
    # installed elsewhere, the package reads the schema beside itself
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ntkscaling import config; "
            "assert config.SCHEMA_PATH.is_relative_to(sys.argv[1]), config.SCHEMA_PATH; "
            "c = config.validate({}, check_data=False); print(c['run_name'])")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "default", out.stderr[-2000:]


def _files(script):
    from ntkscaling.code_inputs import library_files
    return {str(Path(p).relative_to(SRC)) for p in library_files(ROOT / "workflow" / "scripts" / f"{script}.py", SRC)}


def test_code_inputs_follow_imports_transitively():
    # entk_kernel imports data (and its planted tasks), entk, io, methods, models; entk imports its engines,
    # hostmem (and layers) and its argument checks;
    # models the names of the built-in networks and the ResNet (a function-level import)
    assert _files("entk_kernel") == {"__init__.py", "archs.py", "arguments.py", "data.py", "entk.py", "entk_blocks.py",
                                     "entk_fast.py", "entk_jacobian.py", "hostmem.py", "io.py", "layers.py",
                                     "methods.py", "models.py", "planted.py", "resnet.py"}
    # the native module's C source is read (compiled) at run time: an input of the infinite kernels
    assert {"infinite.py", "infinite_blocks.py", "native.py", "pairstep.c", "layers.py",
            "models.py"} <= _files("infinite_kernel")
    # labels and plotting stay out of every kernel and training job
    for script in ("entk_kernel", "regress_kernel", "train_network", "infinite_kernel", "kernel_evolution",
                   "width_distance", "init_checkpoint"):
        assert "plotting.py" not in _files(script), script
    assert "plotting.py" in _files("plot_data_scaling")


def test_code_inputs_see_function_level_and_aliased_imports(tmp_path):
    from ntkscaling.code_inputs import library_files
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
    from ntkscaling.code_inputs import library_files
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
    from ntkscaling import io
    copy = tmp_path / "ntkscaling"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = io.code_version(copy)
    assert before == io.code_version()
    for name in ("training/run.py", "native.py", "pairstep.c", "schema.yaml"):
        path = copy / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert io.code_version(copy) != before, name
        path.write_bytes(original)
    assert io.code_version(copy) == before


def test_job_requests_are_sized_from_the_job_and_capped():
    from ntkscaling import jobsize
    assert jobsize.kernel_mb(1000) == pytest.approx(4.0)  # 1000^2 float32 entries
    assert jobsize.kernel_mb(1000, outputs=10, bytes_per_entry=8) == pytest.approx(800.0)
    small, big = jobsize.entk_mem_mb(1_000), jobsize.entk_mem_mb(50_000)
    assert small < 5_000 and big > 2 * jobsize.kernel_mb(50_000)  # the kernel twice fits in the request
    assert jobsize.capped(1000.2, 1, None) == 1001 and jobsize.capped(1000, 3, None) == 3000
    assert jobsize.capped(1000, 3, 2500) == 2500
    assert jobsize.train_minutes(50_000) > 10 * jobsize.train_minutes(40)  # paper-scale runs ask for hours
    assert jobsize.kernel_threads(100) == 1 and jobsize.kernel_threads(100, small=2) == 2
    assert jobsize.kernel_threads(10_000) == jobsize.MOST_THREADS
