"""The library files a workflow script really runs, as its rule's code inputs (editing one re-runs the jobs
that import it, and only those).

Found by reading imports, not by a hand-kept list: the script's `from ntkscaling import ...`, then every
`from . import ...` / `from .module import ...` of those modules (function-level imports included: they run
too), plus the package's `__init__.py` and the data files a module reads (READS). Standard-library and
third-party imports are not code inputs (the environment's versions are recorded in each output's
provenance instead).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "ntkscaling"
PACKAGE_DIR = Path(__file__).resolve().parent
READS = {"native": ["pairstep.c"]}  # module -> files beside it that it reads (compiles) at run time


@functools.lru_cache(maxsize=None)  # every rule asks about the same few modules while the Snakefile is read
def _imported_modules(path: Path, in_package: bool, package_dir: Path) -> frozenset[str]:
    """Names of ntkscaling modules imported by the Python file at `path`."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            relative = in_package and node.level == 1
            absolute = node.level == 0 and (node.module or "").split(".")[0] == PACKAGE
            if not (relative or absolute):
                continue
            sub = (node.module or "") if relative else (node.module or "")[len(PACKAGE) + 1:]
            if sub:  # from .x import y / from ntkscaling.x import y
                found.add(sub.split(".")[0])
            else:  # from . import x, y / from ntkscaling import x, y
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    found.add(parts[1])
    return frozenset(m for m in found if (package_dir / f"{m}.py").is_file())


def library_files(script, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Sorted paths of every library file `script` runs (transitively), under `package_dir`."""
    package_dir = Path(package_dir)
    todo, seen = list(_imported_modules(Path(script), False, package_dir)), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += _imported_modules(package_dir / f"{module}.py", True, package_dir) - seen
    files = ["__init__.py"] + [f"{m}.py" for m in seen] + [f for m in seen for f in READS.get(m, [])]
    return sorted(str(package_dir / f) for f in files)


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
