"""The config's schema (schema.yaml, shipped inside the package): defaults filled in, every refused key
described in words (`schema_problems`), mappings put in a canonical order (`sort_keys`); integers and
finite numbers as the workflow means them (JSON Schema's own types let 16.0 and NaN through)."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import jsonschema
import yaml

from ..arguments import clip_text

SCHEMA_PATH = Path(__file__).resolve().with_name("schema.yaml")  # package data: found installed or not


class ConfigError(ValueError):
    """The configuration has a bad key or value."""


def _is_integer(checker, value) -> bool:
    """Integers only: JSON Schema counts 16.0 as an integer, but a float where a count or an index is meant
    fails later inside a job (range(16.0)); true and false are not numbers either."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(checker, value) -> bool:
    """Finite numbers only: NaN and infinity (.nan, .inf in YAML; nan, inf through --config) pass every
    bound check, since every comparison with NaN is false."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value)))


def _numeric_text(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _with_defaults(cls):
    check_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, schema)

    types = cls.TYPE_CHECKER.redefine("integer", _is_integer).redefine("number", _is_number)
    return jsonschema.validators.extend(cls, {"properties": set_defaults}, type_checker=types)


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
        wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        if isinstance(err.instance, float) and not math.isfinite(err.instance):
            what = "a finite number"
        elif isinstance(err.instance, float) and "integer" in wanted and "number" not in wanted:
            what = f"a whole number written without a decimal point ({int(err.instance)})" \
                if err.instance.is_integer() else "a whole number"
        elif isinstance(err.instance, str) and {"integer", "number"} & set(wanted) and _numeric_text(err.instance):
            what = (f"a value of type {err.validator_value}, not text (--config passes values inside lists and "
                    f"mappings as text: put them in a --configfile)")
        else:
            what = f"a value of type {err.validator_value}"
    elif err.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sym = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[err.validator]
        bound = err.validator_value
        what = f"a number {sym} {bound:g}" if isinstance(bound, float) and abs(bound) >= 1e6 else f"a number {sym} {bound}"
    elif err.validator == "minItems":
        what = f"a list with at least {err.validator_value} item(s)"
    elif err.validator == "uniqueItems":
        what = "a list without repeated items"
    elif err.validator == "pattern":
        what = f"a string matching {err.validator_value}"
    else:
        what = clip_text(err.message, 300)[1:-1]
    desc = node.get("description", "").strip()
    return f"{key}: got {clip_text(err.instance)}; expected {what}" + (f" ({desc})" if desc else "")


MAX_CONFIG_VALUES = 100_000  # a config is a few hundred values; YAML aliases can make one of billions


def _size_problem(config) -> str | None:
    """A config of more than MAX_CONFIG_VALUES values (counting each use of a YAML alias), found without
    walking past that many: nothing after this check can take long or write a long message."""
    stack, seen = [config], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            return (f"config (top level): more than {MAX_CONFIG_VALUES} values (nested YAML aliases?); a config "
                    f"holds a few hundred")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return None


def load_schema(path=SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def schema_problems(config: dict, schema_path=SCHEMA_PATH) -> list[str]:
    """Fill the schema's defaults into `config` (in place) and describe every key the schema refuses, in
    the order of their paths."""
    too_big = _size_problem(config)
    if too_big:
        return [too_big]
    schema = load_schema(schema_path)
    validator = _with_defaults(jsonschema.Draft7Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(e, schema) for e in errors]


def sort_keys(d: dict):
    """Sort mappings in place, recursively: Snakemake compares dict-valued params by their text, so the same
    values in another key order (a reordered YAML file, defaults filled in) must not look like a change."""
    for key in sorted(d):
        value = d.pop(key)
        if isinstance(value, dict):
            sort_keys(value)
        d[key] = value
