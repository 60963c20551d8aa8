"""Configuration: defaults from the JSON schema, typed coercion of overrides, validation.

The schema (``config.schema.yaml`` in this package; ``workflow/schemas/config.schema.yaml``
links to it) is the single source of defaults. Snakemake passes ``--config`` list and
mapping values as strings (``thresholds='[0.25,0.5,0.75]'``); :func:`coerce` parses them by
the schema's types before validation, with an error naming the key.
"""

from __future__ import annotations

import copy
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
        return float(value)
    return value


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
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"config key {where!r}: {err.message}")
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
        try:
            from_files = merge(from_files, yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from None
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
    overrides = {}
    if path is not None:
        try:
            overrides = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from None
    return validate(overrides)
