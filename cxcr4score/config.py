"""Configuration: defaults from the JSON schema, typed coercion of overrides, validation.

The schema (``config.schema.yaml`` in this package; ``workflow/schemas/config.schema.yaml``
links to it) is the single source of defaults. Snakemake passes ``--config`` list and
mapping values as strings (``thresholds='[0.25,0.5,0.75]'``); :func:`coerce` parses them by
the schema's types before validation, with an error naming the key.
"""

from __future__ import annotations

import copy
import math
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

SCHEMA_FILE = "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range; the message names the key."""


def load_schema():
    """The configuration JSON schema (draft 2020-12) as a dict."""
    return yaml.safe_load(resources.files(__package__).joinpath(SCHEMA_FILE).read_text())


def _resolve(schema, root):
    ref = schema.get("$ref")
    if ref:
        target = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _schema_type(schema):
    if "enum" in schema:
        return "enum"
    return schema.get("type")


def _coerce_value(value, schema, root, key):
    schema = _resolve(schema, root)
    kind = _schema_type(schema)
    if isinstance(value, str) and kind in ("array", "object", "number", "integer", "boolean"):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"config key {key!r}: cannot parse {value!r} as {kind}: {err}") from None
        if kind == "array" and isinstance(value, str):
            value = [value]  # compartments=membrane
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _coerce_value(v, props[k], root, f"{key}.{k}") if k in props else v for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        items = schema.get("items", {})
        return [_coerce_value(v, items, root, f"{key}[{i}]") for i, v in enumerate(value)]
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            digits = round(abs(value).bit_length() * math.log10(2))  # str() refuses beyond 4,300 digits
            raise ConfigError(f"config key {key!r}: a number of about {digits} digits is too large") from None
    return value


def _non_finite(value, key="", outer=()):
    """(dotted key, value) of every NaN or infinite number in a configuration (YAML reads
    ``.nan`` and ``.inf``, which pass every ``minimum`` and ``maximum`` of the schema or fail it
    only by chance). ``outer``: ids of the enclosing lists and mappings (a YAML alias can make a
    list hold itself)."""
    if isinstance(value, (dict, list)) and id(value) in outer:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, f"{key}.{k}" if key else str(k), outer + (id(value),))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, f"{key}.{i}", outer + (id(value),))
    elif isinstance(value, float) and not math.isfinite(value):
        yield key, value


def coerce(config, schema=None):
    """Parse string values of list, mapping, number and boolean keys by the schema's types.

    Parameters
    ----------
    config : dict
        Configuration as Snakemake or the command line gives it.
    schema : dict, optional
        Defaults to :func:`load_schema`.

    Returns
    -------
    dict
        A new dict; keys unknown to the schema are left for validation to report.

    Raises
    ------
    ConfigError
        A value cannot be parsed; the message names the key and the value.
    """
    schema = schema or load_schema()
    props = schema["properties"]
    return {k: _coerce_value(v, props[k], schema, k) if k in props else v for k, v in config.items()}


def merge(base, overrides):
    """Deep-merge ``overrides`` into a copy of ``base`` (mappings key by key, the rest replaced).

    ``--config eligibility='{cutoff: 5}'`` must change only the cutoff, keeping the other
    ``eligibility`` keys of the config file; Snakemake itself replaces the whole mapping by the
    string, so overrides are coerced (:func:`coerce`) and merged here.
    """
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _fill_defaults(config, schema, root):
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub, root)
    return config


def _check_increasing(config, key):
    values = config[key]
    if not all(a < b for a, b in zip(values, values[1:])):
        raise ConfigError(f"config key {key!r}: thresholds must increase strictly, got {values!r}")


def validate(config, schema=None):
    """Coerce, fill defaults and validate a configuration.

    Parameters
    ----------
    config : dict
        Partial configuration (overrides); missing keys take their defaults.

    Returns
    -------
    dict
        The effective configuration.

    Raises
    ------
    ConfigError
        Listing the key and the problem.
    """
    schema = schema or load_schema()
    effective = _fill_defaults(coerce(copy.deepcopy(config), schema), schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(effective), key=lambda e: list(e.absolute_path))
    lines = [f"config key {where!r}: {value} is not a finite number" for where, value in _non_finite(effective)]
    for err in errors:
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        lines.append(f"config key {where!r}: {err.message}")
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    for key in ("thresholds", "pixel_thresholds"):
        _check_increasing(effective, key)
    rule = effective["eligibility"]
    top = {"pct_positive": 100.0, "h_score": 300.0}[rule["metric"]]
    if rule["cutoff"] > top:
        raise ConfigError(f"config key 'eligibility.cutoff': {rule['cutoff']:g} is above the largest "
                          f"{rule['metric']} ({top:g}); no patient could be eligible")
    if effective["nuclei"]["min_area_um2"] >= effective["nuclei"]["max_area_um2"]:
        raise ConfigError("config key 'nuclei': min_area_um2 must be below max_area_um2")
    _check_calibration(effective)
    return effective


def _check_calibration(effective):
    """``calibrated`` is true exactly when ``calibration`` names a record that fits this config."""
    from .calibration_record import config_problems, read_record

    path = effective["calibration"]
    if not path:
        if effective["calibrated"]:
            raise ConfigError("config key 'calibrated': true needs a calibration record; run cxcr4score "
                              "calibrate and set calibration: RECORD.yaml (it sets calibrated)")
        return
    record, problems = read_record(path)
    if record is not None:
        problems = config_problems(record, effective, path)
    if problems:
        raise ConfigError("config key 'calibration':\n  " + "\n  ".join(problems))
    effective["calibrated"] = True


def from_snakemake(public_config, config_files=None, overrides=None):
    """The effective configuration of a workflow run.

    Parameters
    ----------
    public_config : dict
        Snakemake's ``config``: the config files' values, each ``--config`` key replacing the
        file's value whole (a mapping given on the command line arrives as a string).
    config_files : sequence of path-like, optional
        The config files (``workflow.configfiles``).
    overrides : dict, optional
        The ``--config`` values alone (``workflow.config_settings.overwrite_config``).

    Returns
    -------
    dict
        With both optional arguments, the files' values deep-merged with the coerced overrides,
        so that ``--config eligibility='{cutoff: 5}'`` keeps the file's other eligibility keys;
        without them (a Snakemake that no longer offers those attributes), ``public_config``
        coerced: the run still works, but a mapping given with ``--config`` replaces the file's
        mapping and its missing keys take the schema defaults.

    Raises
    ------
    ConfigError
        As :func:`validate`.
    """
    if config_files is None or overrides is None:
        return validate(coerce(dict(public_config)))
    from_files = {}
    for path in config_files:
        from_files = merge(from_files, read_config_file(path))
    return validate(merge(from_files, coerce(dict(overrides))))


def default_config():
    """The effective configuration with every default."""
    return validate({})


def from_file(path):
    """The effective configuration with the overrides of a YAML file (None: the defaults).

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, or a value is invalid (naming the key).
    """
    return validate({} if path is None else read_config_file(path))


def read_config_file(path):
    """The keys of a YAML config file.

    Parameters
    ----------
    path : str or path-like
        A UTF-8 YAML file of ``key: value`` lines.

    Returns
    -------
    dict
        Its keys as written ({} for an empty file), not yet coerced or validated.

    Raises
    ------
    ConfigError
        The file cannot be read, is not UTF-8 YAML, or does not hold a mapping of keys; the
        message names the file.
    """
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {' '.join(str(err).split())}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"cannot read config {path}: it holds a {type(values).__name__}, not a mapping of "
                          "config keys (key: value lines)")
    return values
