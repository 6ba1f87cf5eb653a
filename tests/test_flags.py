"""flags.toml, the catalogue of the command line's option groups: every table builds, every key is known,
every option is offered by a command, and a malformed table is refused with one line naming it."""

from dataclasses import fields

import pytest
import tomllib
import typer
from typer.core import TyperGroup

from ddcore.errors import DDError
from orchestrator.cli import app, options

CATALOGUE = tomllib.loads(options.FLAGS.read_text())


def offered() -> set[tuple[str, str]]:
    """(first flag, help text) of every option of every command, sub-commands included."""
    found, groups = set(), [typer.main.get_command(app)]
    while groups:
        for command in groups.pop().commands.values():
            if isinstance(command, TyperGroup):
                groups.append(command)
            else:
                found |= {(p.opts[0], p.help) for p in command.params if isinstance(p, typer.core.TyperOption)}
    return found


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_table_builds_and_every_option_is_offered_by_a_command(name):
    group = options.group(name)
    entries = {key: entry for key, entry in CATALOGUE[name].items() if key != "panel"}
    assert [f.name for f in fields(group)] == list(entries)
    assert group.panel == CATALOGUE[name].get("panel")
    commands = offered()
    for f in fields(group):
        option = f.metadata["option"]
        assert (option.param_decls[0].split("/")[0], option.help) in commands, f"[{name}.{f.name}]"
        assert getattr(group(), f.name) == CATALOGUE[name][f.name].get("default")


def test_types_defaults_bounds_and_computed_help():
    server, method = options.group("server"), options.group("method")
    port = next(f for f in fields(server) if f.name == "port").metadata["option"]
    assert (port.default, port.min, port.max, port.param_decls) == (5000, 1, 65535, ("--port",))
    hints = {f.name: f.type for f in fields(method)}
    assert hints["ipc"] == int | None and hints["bf16"] is bool and hints["lr_images"] == float | None
    bf16 = next(f for f in fields(method) if f.name == "bf16").metadata["option"]
    assert bf16.help.endswith(f"; {options.NATIVE_BF16}.") and "{" not in bf16.help


@pytest.mark.parametrize(
    "table, message",
    [
        ({"ipc": {"type": "int?", "flag": "--ipc", "help": "h", "choices": 1}}, "[bad.ipc]: unknown key 'choices'"),
        ({"ipc": {"type": "integer", "flag": "--ipc", "help": "h"}}, "[bad.ipc]: unknown type 'integer'"),
        ({"ipc": {"type": "int", "flag": "--ipc", "help": "h"}}, "[bad.ipc]: missing key 'default'"),
        ({"ipc": {"type": "int?", "help": "h"}}, "[bad.ipc]: missing key 'flag'"),
        ({"ipc": {"type": "int?", "flag": "--ipc", "help": "{NOPE}"}}, "[bad.ipc]: unknown name {NOPE} in help"),
        ({"title": "Method"}, "[bad]: unknown key 'title'"),
    ],
)
def test_a_malformed_table_is_one_line_naming_table_and_key(table, message):
    with pytest.raises(DDError) as raised:
        options.group("bad", table)
    assert f"flags.toml {message}" in str(raised.value) and "\n" not in str(raised.value)
