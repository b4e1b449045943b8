"""Every config value checked when the config is built, by the field's declared type and (HF fields) its bounds.

A YAML file or a Python call can put any value into any field: `learning_rate: [0.1]`,
`rloo_k: 4.5`, `per_device_train_batch_size: 0`. The command line converts its strings with
the field's type, but YAML values and keyword arguments reach the dataclass unconverted.
`check_field_types` walks every field of a config against its type annotation (ours and
`TrainingArguments`'), so a wrong value is a `ValueError` naming the field at build time
instead of a `TypeError` or `ZeroDivisionError` at train time:

* `int`: an int; a float with an integer value (`4.0`) or a numeric string (`"4"`) is converted;
  `4.5` is an error;
* `float`: an int or float (converted to float), or a numeric string (`"5e-7"`, which YAML 1.1 reads
  as a string);
* `bool`: a bool, or a string the command line accepts (`"true"`, `"no"`, ...);
* `str`: a string (a number is left as it is); a list or mapping is an error;
* `list[X]`: a list whose items are X (a single X becomes a one-item list);
* `dict`, `Literal`, enums and unions (`int | None`) as declared. Values of other classes
  (objects set by `TrainingArguments.__post_init__`, a reward function) are not judged.

A field whose YAML / Python values are richer than its command-line type (`datasets`: strings on the
command line, mappings in YAML) names the type to check in a class attribute of its config (not a field):
`value_types = {"datasets": list[str | dict] | None}`.

`HF_BOUNDS` adds the ranges of the `TrainingArguments` fields a user sets most (learning rate,
batch sizes, ...); each config's own ranges stay in its `validate()`.
"""

from __future__ import annotations

import enum
import functools
import math
import types
import typing
from dataclasses import fields

_JSON_TYPES = (bool, int, float, str, list, tuple, dict, type(None))
_TRUE, _FALSE = ("true", "yes", "y", "1", "t"), ("false", "no", "n", "0", "f")

# field -> (lowest, highest, lowest allowed, highest allowed): the range of a TrainingArguments field
HF_BOUNDS = {
    "learning_rate": (0, None, True, None),
    "weight_decay": (0, None, True, None),
    "max_grad_norm": (0, None, True, None),
    "adam_beta1": (0, 1, True, False),
    "adam_beta2": (0, 1, True, False),
    "adam_epsilon": (0, None, True, None),
    "per_device_train_batch_size": (1, None, True, None),
    "per_device_eval_batch_size": (1, None, True, None),
    "gradient_accumulation_steps": (1, None, True, None),
    "num_train_epochs": (0, None, True, None),
    "warmup_steps": (0, None, True, None),
    "logging_steps": (0, None, False, None),
    "save_steps": (0, None, False, None),
    "save_total_limit": (0, None, True, None),
    "dataloader_num_workers": (0, None, True, None),
}


class _Mismatch(Exception):
    """The value does not fit the annotation."""


@functools.lru_cache(maxsize=None)
def _annotations(cls) -> dict:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: judge only the fields whose type is a class
        return {f.name: f.type for f in fields(cls) if isinstance(f.type, type)}


def _describe(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"one of {[m.value for m in annotation]}"
    if origin is dict or annotation is dict:
        return "a mapping"
    name = getattr(annotation, "__name__", str(annotation))
    return {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(name, name)


def _to_number(value, kind):
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, str):
        try:
            value = float(value.strip()) if kind is float else int(value.strip())
        except ValueError:
            if kind is int:  # "4.0" is an integer written as a float
                return _to_number(_to_number(value, float), int)
            raise _Mismatch from None
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is int and isinstance(value, int):
        return value
    if kind is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise _Mismatch


def _convert(value, annotation):
    """`value` fitted to `annotation` (possibly converted), or _Mismatch."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (typing.Any, object) or not isinstance(value, _JSON_TYPES):
        return value  # not a YAML / CLI value: nothing to judge
    if annotation is type(None):
        if value is None:
            return value
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        members = sorted(args, key=lambda a: a is not type(value))  # an exact type match first
        for member in members:
            try:
                return _convert(value, member)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin in (list, tuple) or annotation in (list, tuple):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        return [_convert(item, args[0]) for item in items] if args else items
    if origin is dict or annotation is dict:
        if isinstance(value, dict):
            return value
        raise _Mismatch
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch
    if annotation in (int, float):
        return _to_number(value, annotation)
    if annotation is str:
        if isinstance(value, (list, tuple, dict)):
            raise _Mismatch
        return value
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if isinstance(value, str) and value in {m.value for m in annotation}:
            return value
        raise _Mismatch
    return value  # an annotation this check does not know


def check_field_types(config) -> None:
    """Convert or reject every field value of `config` by its annotation (see the module docstring)."""
    hints = dict(_annotations(type(config)))
    for cls in reversed(type(config).__mro__):
        hints.update(cls.__dict__.get("value_types", {}))
    for f in fields(config):
        annotation = hints.get(f.name)
        if not f.init or annotation is None:
            continue
        value = getattr(config, f.name)
        try:
            converted = _convert(value, annotation)
        except _Mismatch:
            raise ValueError(f"{f.name}={value!r}: must be {_describe(annotation)} "
                             f"(got {type(value).__name__})") from None
        if converted is not value and converted != value or type(converted) is not type(value):
            setattr(config, f.name, converted)


def check_bounds(config, bounds: dict = HF_BOUNDS) -> None:
    """Every field named in `bounds` lies in its range (a `ValueError` naming the field otherwise)."""
    for name, (low, high, low_ok, high_ok) in bounds.items():
        value = getattr(config, name, None)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        below = low is not None and (value < low if low_ok else value <= low)
        above = high is not None and (value > high if high_ok else value >= high)
        if below or above or (isinstance(value, float) and math.isnan(value)):
            parts = [f"{'>=' if low_ok else '>'} {low}" if low is not None else "",
                     f"{'<=' if high_ok else '<'} {high}" if high is not None else ""]
            raise ValueError(f"{name}={value!r}: must be {' and '.join(p for p in parts if p)}")
