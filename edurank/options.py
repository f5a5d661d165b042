"""Options declared once: a job's config dataclass gives each option its default and help text, and the CLI
is generated from it (as Infinity does), so a flag, its default and its mapping can never disagree.

    @dataclass
    class JobConfig:
        learning_rate: float = option(5e-5, "peak learning rate", flag="--lr")

Flags are the field names in kebab case unless `flag` says otherwise. Types come from the annotations:
int, float, str, bool (`--x` / `--no-x`), `X | None` (absent: None), `tuple[int, ...]` and `tuple[str, ...]`
(comma-separated), and nested config dataclasses, whose options join the same flat list.

Building the flags never builds the config: defaults are read from the declarations, so a config module that
imports nothing heavy gives a parser that imports nothing heavy (`edurank --help` answers at once), and a
default that costs work to compute names its flag's text instead (`cli_default`), parsed when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from edurank.errors import InputError

Config = TypeVar("Config")
PARSE, HELP, FLAG, CHOICES, MINIMUM, METAVAR = "parse", "help", "flag", "choices", "minimum", "metavar"
CLI_DEFAULT = "cli_default"


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
           choices: tuple[str, ...] | None = None, minimum: float | None = None, metavar: str | None = None,
           parse: Callable[[str], Any] | None = None, factory: Callable[[], Any] | None = None,
           cli: bool = True, cli_default: str | None = None) -> Any:
    """A config field with its CLI facts. `parse` turns the flag's text into the value (for types the
    annotation alone cannot say); `cli=False` keeps a field out of the CLI (set by code, not by users);
    `cli_default` is the flag's default as a user would type it, for a `factory` that costs work (e.g. asks
    torch for a GPU): help shows it, and argparse parses it only when the command runs."""
    metadata = {HELP: help, FLAG: flag, CHOICES: choices, MINIMUM: minimum, METAVAR: metavar, PARSE: parse,
                "cli": cli, CLI_DEFAULT: cli_default}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_fields(config: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    """(field, resolved type) of every CLI option of a config class, nested configs flattened."""
    hints = typing.get_type_hints(config)
    found: list[tuple[dataclasses.Field[Any], Any]] = []
    for item in dataclasses.fields(config):
        if not item.metadata.get("cli", True):
            continue
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            found += cli_fields(kind)  # type: ignore[arg-type]
        else:
            found.append((item, kind))
    return found


def flag_of(item: dataclasses.Field[Any]) -> str:
    return item.metadata.get(FLAG) or "--" + item.name.replace("_", "-")


def bounded(cast: Callable[[str], Any], minimum: float | None) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = cast(text)
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {value}")
        return value

    parse.__name__ = cast.__name__  # argparse names the type in its error message
    return parse


def comma_separated(cast: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(cast(part) for part in text.split(",") if part.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"give comma-separated {cast.__name__} values, got '{text}'") from err

    parse.__name__ = f"comma-separated {cast.__name__}"
    return parse


def argument_type(kind: Any, item: dataclasses.Field[Any]) -> Callable[[str], Any]:
    """The argparse `type` for a field: its own `parse`, else one built from its annotation."""
    if item.metadata.get(PARSE):
        return item.metadata[PARSE]
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is tuple:
        return comma_separated(args[0])
    base = args[0] if args else kind
    if base not in (int, float, str):
        raise TypeError(f"option {item.name}: no CLI type for {kind}; give it parse=")
    return bounded(base, item.metadata.get(MINIMUM)) if base is not str else str


def shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config: type) -> None:
    """One flag per option of `config` (nested configs included), defaults and help from the dataclass."""
    defaults = cli_defaults(config)
    for item, kind in cli_fields(config):
        default = defaults[item.name]
        help_text = item.metadata.get(HELP, "")
        if kind is bool:
            parser.add_argument(flag_of(item), dest=item.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
            continue
        suffix = f" (default: {shown(default)})" if default is not None else ""
        parser.add_argument(flag_of(item), dest=item.name, type=argument_type(kind, item), default=default,
                            choices=item.metadata.get(CHOICES),
                            metavar=item.metadata.get(METAVAR) or (None if item.metadata.get(CHOICES) else
                                                                   flag_of(item)[2:].upper().replace("-", "_")),
                            help=help_text + suffix)


def declared(item: dataclasses.Field[Any]) -> Any:
    return item.default if item.default is not dataclasses.MISSING else item.default_factory()  # type: ignore[misc]


def cli_defaults(config: type) -> dict[str, Any]:
    """Each CLI option's default (nested configs' included), as declared: `config` itself is not built, so
    neither its validation nor a `cli_default` option's factory runs while the parser is."""
    hints = typing.get_type_hints(config)
    defaults: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        if not item.metadata.get("cli", True):
            continue
        if item.metadata.get(CLI_DEFAULT) is not None:
            defaults[item.name] = item.metadata[CLI_DEFAULT]
        elif dataclasses.is_dataclass(hints[item.name]):
            nested = declared(item)  # the parent's factory may set the nested defaults
            defaults.update({inner.name: find_value(nested, inner.name) for inner, _ in cli_fields(type(nested))})
        else:
            defaults[item.name] = declared(item)
    return defaults


def find_value(config: Any, name: str) -> Any:
    """A (possibly nested) option's value in a config instance."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if item.name == name:
            return value
        if dataclasses.is_dataclass(value) and item.metadata.get("cli", True):
            try:
                return find_value(value, name)
            except KeyError:
                continue
    raise KeyError(name)


def from_args(config: type[Config], args: argparse.Namespace) -> Config:
    """Build the config (and its nested configs) from parsed flags; its validation errors become InputError."""
    hints = typing.get_type_hints(config)
    values: dict[str, Any] = {}
    for item in dataclasses.fields(config):  # type: ignore[arg-type]
        if not item.metadata.get("cli", True):
            continue
        if dataclasses.is_dataclass(hints[item.name]):
            values[item.name] = from_args(hints[item.name], args)
        elif hasattr(args, item.name):
            values[item.name] = getattr(args, item.name)
    try:
        return config(**values)
    except ValueError as err:
        raise InputError(str(err)) from err
