"""The library files a workflow script really runs, as its rule's code inputs (editing one re-runs the jobs
that import it, and only those).

Found by reading imports, not by a hand-kept list: the script's `from ntkscaling import ...`, then every
`from . import ...` / `from .module import ...` / `from ..module import ...` of those modules (function-level
imports included: they run too), the `__init__.py` of every package on the way, every module of a subpackage
imported whole (`from ntkscaling import training`: its public names load any of them), and the data files a
module reads (READS). Standard-library and
third-party imports are not code inputs (the environment's versions are recorded in each output's
provenance instead).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "ntkscaling"
PACKAGE_DIR = Path(__file__).resolve().parent
# module -> files beside it that it reads at run time (compiles, loads)
READS = {"kernels.infinite.native": ["pairstep.c"]}


def module_file(module: str, package_dir: Path) -> Path | None:
    """The file of library module `module` (dotted, relative to the package: "training.run", "data"): its .py
    file, or a subpackage's __init__.py; None if there is none."""
    base = package_dir.joinpath(*module.split(".")) if module else package_dir
    for path in (base.with_name(base.name + ".py") if module else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=None)  # every rule asks about the same few modules while the Snakefile is read
def _imported_modules(path: Path, module: str | None, package_dir: Path) -> frozenset[tuple[str, bool]]:
    """(dotted name relative to the package, imported whole) of the library modules that the Python file at
    `path` imports; `module` is that file's own dotted name inside the package, or None for a file outside it
    (a script). `from X import a, b`: a and b are imported whole where they are modules; X is imported whole
    where one of them is an attribute (a subpackage's public names may load any of its modules), else it
    only runs."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    if module is None:
        here = None
    else:  # the package a relative import starts from: the module's own, or itself for an __init__.py
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level and here is not None:
                if node.level - 1 > len(here):
                    continue
                parts = here[:len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
                parts = node.module.split(".")[1:]
            else:
                continue
            names = [".".join(parts + [alias.name]) for alias in node.names]
            submodules = [m for m in names if module_file(m, package_dir) is not None]
            found |= {(m, True) for m in submodules}
            found.add((".".join(parts), len(submodules) < len(names)))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    found.add((".".join(parts[1:]), True))
    return frozenset((m, whole) for m, whole in found if m and module_file(m, package_dir) is not None)


def _with_parents(module: str) -> list[str]:
    """A module and the packages above it, whose __init__.py Python runs first ("training.run" ->
    ["training", "training.run"])."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _package_contents(module: str, package_dir: Path) -> list[str]:
    """Every module of subpackage `module`, at any depth: importing a subpackage gives its public names,
    which load any of them."""
    folder = package_dir.joinpath(*module.split("."))
    return [".".join(p.relative_to(package_dir).with_suffix("").parts).removesuffix(".__init__")
            for p in sorted(folder.rglob("*.py"))]


def library_files(script, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Sorted paths of every library file `script` runs (transitively), under `package_dir`."""
    package_dir = Path(package_dir)
    # (module, imported): an imported subpackage brings all its modules; a package that is only the parent
    # of an imported module runs just its __init__.py
    todo = list(_imported_modules(Path(script), None, package_dir))
    run, imported = set(), set()
    while todo:
        module, whole = todo.pop()
        if module in (imported if whole else run):
            continue
        path = module_file(module, package_dir)
        if module not in run:
            run.add(module)
            todo += [(m, False) for m in _with_parents(module)[:-1]]
            todo += list(_imported_modules(path, module, package_dir))
        if whole:
            imported.add(module)
            if path.name == "__init__.py":
                todo += [(m, True) for m in _package_contents(module, package_dir)]
    files = {package_dir / "__init__.py"} | {module_file(m, package_dir) for m in run}
    for m in run:
        files |= {module_file(m, package_dir).parent / f for f in READS.get(m, [])}
    return sorted(str(f) for f in files)


def factory_files(factory: str | None) -> list[str]:
    """The file that defines a user's network (model.factory), as a code input of the jobs that build it:
    'file.py:function' names it; for 'package.module:function' it is the module's source file, found
    without running it (a module without one, e.g. compiled, gives none)."""
    if not factory:
        return []
    where = factory.rpartition(":")[0]
    if where.endswith(".py"):
        return [where]
    import importlib.util
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError):
        return []  # the config check reports a factory that cannot be imported
    origin = getattr(spec, "origin", None)
    return [origin] if origin and origin.endswith(".py") else []
