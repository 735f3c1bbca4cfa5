"""Command-line options made from a config dataclass, so that a field is declared once.

Each field's metadata carries its help text and, where it has them, its choices and units:

    crop_size: int = option(256, "side S of the S x S crops", units="px")

`config_options(cls, presets)` turns every field into a click option (`--crop-size`) whose help
says what it is, its choices and units, and its default (or, where presets differ, each preset's
value); `from_options(cls, base, values)` applies the options given on top of a base config (a
preset, or the class's defaults). Tuples are written comma-separated.
"""
from __future__ import annotations

import dataclasses

import click

from .errors import ConfigError, ToolkitError


def option(default, help: str, choices: tuple | None = None, units: str | None = None):
    """A dataclass field with its command-line help."""
    meta = {"help": help, "choices": choices, "units": units}
    return dataclasses.field(default=default, metadata=meta)


def _kind(f: dataclasses.Field) -> str:
    """int, float, bool, tuple (of str) or str, from the field's annotation."""
    t = str(f.type).replace("'", "").replace(" ", "")
    if t.startswith("tuple"):
        return "tuple"
    return {"int": "int", "float": "float", "bool": "bool"}.get(t.split("|")[0], "str")


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def help_text(f: dataclasses.Field, presets: dict | None = None, default=dataclasses.MISSING) -> str:
    """What the field is, its choices and units, and its default or each preset's value."""
    meta = f.metadata
    text = meta.get("help") or f.name.replace("_", " ")
    if meta.get("choices") and "one of" not in text:
        text += f"; one of {', '.join(map(str, meta['choices']))}"
    if meta.get("units"):
        text += f" ({meta['units']})"
    if _kind(f) == "tuple" and "comma-separated" not in text:
        text += "; comma-separated"
    if "[default" in text:
        return text
    if presets:
        values = {name: _show(getattr(p, f.name)) for name, p in presets.items()}
        if len(set(values.values())) == 1:
            text += f" [every preset: {next(iter(values.values()))}]"
        else:
            text += " [preset's value: " + ", ".join(f"{k} {v}" for k, v in values.items()) + "]"
    else:
        text += f" [default: {_show(f.default if default is dataclasses.MISSING else default)}]"
    return text


def config_options(cls, presets: dict | None = None, skip: tuple[str, ...] = ()):
    """A decorator adding one click option per field of `cls` (None when not given)."""
    def wrap(fn):
        for f in reversed(dataclasses.fields(cls)):
            if f.name in skip:
                continue
            name, kind = "--" + f.name.replace("_", "-"), _kind(f)
            helptext = help_text(f, presets)
            if kind == "bool":
                fn = click.option(f"{name}/--no-{f.name.replace('_', '-')}", f.name, default=None, help=helptext)(fn)
                continue
            ptype = {"int": int, "float": float}.get(kind, str)
            if f.metadata.get("choices") and kind == "str":
                ptype = click.Choice([str(c) for c in f.metadata["choices"]])
            fn = click.option(name, f.name, type=ptype, default=None, help=helptext)(fn)
        return fn
    return wrap


def from_options(cls, base, values: dict):
    """`base` (a config instance) with the options that were given (not None) applied; tuple
    fields from comma-separated text. A bad value raises ConfigError naming the option."""
    kinds = {f.name: _kind(f) for f in dataclasses.fields(cls)}
    given = {}
    for name, value in values.items():
        if value is None or name not in kinds:
            continue
        if kinds[name] == "tuple":
            value = tuple(v.strip() for v in str(value).split(",") if v.strip())
        given[name] = value
    try:
        return dataclasses.replace(base, **given)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def describe(cfg) -> str:
    """A config's values, one `--option value` a line (what `--show-config` and `presets` print)."""
    return "\n".join(f"--{f.name.replace('_', '-')} {_show(getattr(cfg, f.name))}" for f in dataclasses.fields(cfg))


class Commands(click.Group):
    """A command group that reports the toolkit's own errors (ToolkitError) as one line naming the
    file or option and the fix, with exit status 2, never as a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ToolkitError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


class StoreArg(click.ParamType):
    """A store: a folder, file:///path, or a URL in object storage (s3://bucket/prefix, gs://, az://)."""

    name = "store"

    def __init__(self, exists: bool = False):
        self.exists = exists

    def convert(self, value, param, ctx):
        from .store.location import LocationError, locate

        try:
            loc = locate(value)
        except LocationError as e:
            self.fail(str(e), param, ctx)
        if not loc.remote and self.exists and not loc.path.is_dir():
            self.fail(f"{value}: no such store folder", param, ctx)
        if not loc.remote and loc.path.exists() and not loc.path.is_dir():
            self.fail(f"{value}: is a file, not a store folder", param, ctx)
        return value
