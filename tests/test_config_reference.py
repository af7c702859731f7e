"""The configuration reference (docs/config-reference.md, config/README.md) is the schema's, and current."""
from pathlib import Path

import yaml

from ntkscaling.pipeline import config
from ntkscaling import config_reference

ROOT = Path(__file__).resolve().parents[1]


def _leaf_keys(node, path=()):
    for key, child in node.get("properties", {}).items():
        if child.get("type") == "object" and "properties" in child:
            yield from _leaf_keys(child, path + (key,))
        else:
            yield ".".join(path + (key,)), child


def test_committed_reference_is_current():
    assert config_reference.stale(ROOT, config_reference.render(config.load_schema())) == [], (
        "run: python -m ntkscaling.config_reference")


def test_every_key_has_one_row_with_its_default_and_bounds():
    schema = config.load_schema()
    rows = {}
    for line in config_reference.render(schema).splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells
    keys = dict(_leaf_keys(schema))
    assert set(rows) == set(keys)
    for key, node in keys.items():
        cells = rows[key]
        if "default" in node:  # the default as YAML reads it back
            assert yaml.safe_load(cells[2].strip("`")) == node["default"], key
        if "minimum" in node:
            assert f">= {node['minimum']}" in cells[3], key
        for value in node.get("enum", []):
            assert f"`{value}`" in cells[3], key
    assert rows["train.lr"][3] == "> 0" and rows["select_by"][3] == "one of `mse`, `error`"


def test_check_mode_names_a_stale_file(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "config").mkdir()
    assert config_reference.main(["--root", str(tmp_path)]) == 0
    assert config_reference.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / "config" / "README.md").write_text("old\n")
    assert config_reference.main(["--root", str(tmp_path), "--check"]) == 1
    assert "config/README.md" in capsys.readouterr().err


def test_the_documented_command_writes_the_reference(tmp_path):
    """`python -m ntkscaling.config_reference`, as the pages give it, run from a checkout's root (here a
    scratch one): it writes both files, equal to the committed ones."""
    import os
    import subprocess
    import sys
    (tmp_path / "docs").mkdir()
    (tmp_path / "config").mkdir()
    res = subprocess.run([sys.executable, "-m", "ntkscaling.config_reference"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr
    for name in ("docs/config-reference.md", "config/README.md"):
        assert (tmp_path / name).read_text() == (ROOT / name).read_text(), name
