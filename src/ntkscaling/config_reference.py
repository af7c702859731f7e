"""The configuration reference, rendered from the schema (schema.yaml, the one place each key is defined).

docs/config-reference.md and config/README.md (where the Snakemake workflow catalog looks for a workflow's
configuration) are this module's output; tests/test_config_reference.py fails when either differs from what
the schema renders, so the reference cannot drift from the keys the config check accepts.

    python -m ntkscaling.config_reference           # rewrite both files
    python -m ntkscaling.config_reference --check   # exit 1 naming the stale file
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from . import files
from .pipeline.config import load_schema

TARGETS = ("docs/config-reference.md", "config/README.md")

HEADER = """# Configuration reference

Every key of a run's configuration, its type, default and allowed values, rendered from
`src/ntkscaling/pipeline/schema.yaml` by `python -m ntkscaling.config_reference` (a test keeps this file current).
`config/config.yaml` is the default run; `config/presets/` holds complete runs and `config/overlays/`
small files added after one (`snakemake --configfile PRESET OVERLAY`); docs/configuration.md says how the
keys combine and lists the presets and datasets. Unknown keys are errors; every value is checked before any
job starts.
"""


def _flow(value) -> str:
    """A value as it is written in a YAML config (flow style, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _type_text(node: dict) -> str:
    kinds = node.get("type", "")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "array" in kinds and "items" in node:
        item = node["items"].get("type", "")
        kinds = [f"list of {item}" if k == "array" and item else k for k in kinds]
    return " or ".join(k for k in kinds if k)


def _bounds(node: dict) -> list[str]:
    marks = [(">=", "minimum"), (">", "exclusiveMinimum"), ("<=", "maximum"), ("<", "exclusiveMaximum")]
    return [f"{sign} {_flow(node[key])}" for sign, key in marks if key in node]


def _allowed_text(node: dict) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{_flow(v)}`" for v in node["enum"]))
    parts += _bounds(node)
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    if "maxLength" in node:
        parts.append(f"at most {node['maxLength']} characters")
    items = node.get("items")
    if isinstance(items, dict):
        inner = _allowed_text(items)
        if inner:
            parts.append(f"each {inner}")
    if node.get("minItems"):
        parts.append(f"at least {node['minItems']} item{'s' if node['minItems'] > 1 else ''}")
    if node.get("uniqueItems"):
        parts.append("no repeats")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(node: dict, path: list[str]):
    """(dotted key, leaf schema) for every key under `node`, nested objects flattened, in schema order."""
    for key, child in node.get("properties", {}).items():
        if child.get("type") == "object" and "properties" in child:
            yield from _rows(child, path + [key])
        else:
            yield ".".join(path + [key]), child


def _table(rows) -> list[str]:
    lines = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    for key, node in rows:
        default = f"`{_cell(_flow(node['default']))}`" if "default" in node else ""
        lines.append(f"| `{key}` | {_cell(_type_text(node))} | {default} | {_cell(_allowed_text(node))} | "
                     f"{_cell(node.get('description', ''))} |")
    return lines


def _nested_descriptions(node: dict, path: list[str]) -> list[str]:
    """The description of each object nested inside a section (dataset.planted), under the section's text."""
    lines = []
    for key, child in node.get("properties", {}).items():
        if child.get("type") == "object" and "properties" in child:
            lines += [f"`{'.'.join(path + [key])}`: {' '.join(child.get('description', '').split())}", ""]
            lines += _nested_descriptions(child, path + [key])
    return lines


def render(schema: dict) -> str:
    """The reference as Markdown: the top-level keys, then one section per config section, in schema order."""
    top = [(key, node) for key, node in schema["properties"].items()
           if not (node.get("type") == "object" and "properties" in node)]
    lines = [HEADER.rstrip(), "", "## Top-level keys", "", *_table(top), ""]
    for key, node in schema["properties"].items():
        if node.get("type") == "object" and "properties" in node:
            lines += [f"## `{key}`", "", " ".join(node.get("description", "").split()), ""]
            lines += _nested_descriptions(node, [key])
            lines += [*_table(_rows(node, [key])), ""]
    return "\n".join(lines)


def stale(root: Path, text: str) -> list[Path]:
    """The targets under `root` whose content differs from `text`."""
    return [root / t for t in TARGETS if not (root / t).is_file() or (root / t).read_text() != text]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    parser.add_argument("--root", default=".", help="the repository root (default: the current folder)")
    args = parser.parse_args(argv)
    root, text = Path(args.root), render(load_schema())
    outdated = stale(root, text)
    if args.check:
        for path in outdated:
            print(f"{path}: differs from the schema's reference; run python -m ntkscaling.config_reference",
                  file=sys.stderr)
        return 1 if outdated else 0
    for path in outdated:
        with files.atomic_path(path) as tmp:
            tmp.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
