"""Configuration checking: the schema (config/schema.yaml) plus the cross-key rules a schema cannot say.

`validate` fills defaults in place, puts keys in a canonical (sorted) order, and raises `ConfigError` naming every bad key, its value and what is
allowed, so a bad config stops the Snakefile before any job starts.
"""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """The configuration has a bad key or value."""


def _with_defaults(cls):
    check_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


def _schema_at(schema: dict, path) -> dict:
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return node


def _describe(err: jsonschema.ValidationError, schema: dict) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    key = f"config key '{path}'" if path else "config (top level)"
    node = _schema_at(schema, [p for p in err.absolute_path])
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        where = f"config section '{path}'" if path else "config (top level)"
        return f"{where}: unknown key(s) {extra}; allowed keys are {allowed}"
    if err.validator == "enum":
        what = f"one of {err.validator_value}"
    elif err.validator == "type":
        what = f"a value of type {err.validator_value}"
    elif err.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sym = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[err.validator]
        what = f"a number {sym} {err.validator_value}"
    elif err.validator == "minItems":
        what = f"a list with at least {err.validator_value} item(s)"
    elif err.validator == "uniqueItems":
        what = "a list without repeated items"
    elif err.validator == "pattern":
        what = f"a string matching {err.validator_value}"
    else:
        what = err.message
    desc = node.get("description", "").strip()
    return f"{key}: got {err.instance!r}; expected {what}" + (f" ({desc})" if desc else "")


def load_schema(path=SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate(config: dict, schema_path=SCHEMA_PATH) -> dict:
    """Fill defaults into `config` (in place) and check it; raise ConfigError listing every problem."""
    schema = load_schema(schema_path)
    validator = _with_defaults(jsonschema.Draft7Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_describe(e, schema) for e in errors]
    if not problems:
        problems += _cross_checks(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    config["sample_sizes"] = sorted(config["sample_sizes"])
    _sort_keys(config)
    return config


def _sort_keys(d: dict):
    """Sort mappings in place, recursively: Snakemake compares dict-valued params by their text, so the same
    values in another key order (a reordered YAML file, defaults filled in) must not look like a change."""
    for key in sorted(d):
        value = d.pop(key)
        if isinstance(value, dict):
            _sort_keys(value)
        d[key] = value


def _cross_checks(config: dict) -> list[str]:
    problems = []
    ns = sorted(config["sample_sizes"])
    fit = config["fit"]
    lo = fit["n_min"] if fit["n_min"] is not None else ns[0]
    hi = fit["n_max"] if fit["n_max"] is not None else ns[-1]
    inside = [n for n in ns if lo <= n <= hi]
    if len(inside) < 2:
        problems.append(f"config keys 'fit.n_min'/'fit.n_max': range [{lo}, {hi}] holds {len(inside)} of "
                        f"sample_sizes {ns}; expected at least 2 (3 with fit.floor)")
    elif fit["floor"] and len(inside) < 3:
        problems.append(f"config key 'fit.floor': true needs at least 3 sample sizes in the fit range, got {inside}")
    ridge = config["fit"]["figure_ridge"]
    if ridge is not None and ridge not in config["kernel"]["ridges"]:
        problems.append(f"config key 'fit.figure_ridge': got {ridge}; expected one of kernel.ridges "
                        f"{config['kernel']['ridges']}")
    widths = config["model"]["widths"]
    width = config["fit"]["figure_width"]
    if width is not None and width not in widths:
        problems.append(f"config key 'fit.figure_width': got {width}; expected one of model.widths {widths}")
    too_big = [k for k in config["after_kernel"]["ks"] if k > ns[-1]]
    if too_big:
        problems.append(f"config key 'after_kernel.ks': got {too_big}; expected each k <= the largest sample "
                        f"size {ns[-1]} (the networks on k use the first k points of the nested subsets)")
    for key, values in (("evolution.sample_sizes", config["evolution"]["sample_sizes"] or []),
                        ("width_scaling.n", [config["width_scaling"]["n"]] if config["width_scaling"]["n"] else [])):
        unknown = [n for n in values if n not in ns]
        if unknown:
            problems.append(f"config key '{key}': got {unknown}; expected values from sample_sizes {ns}")
    if config["dataset"]["name"] == "digits" and config["dataset"]["test_size"] >= 1797:
        problems.append(f"config key 'dataset.test_size': got {config['dataset']['test_size']}; digits has 1797 "
                        f"images, expected fewer so that a training pool remains")
    return problems
