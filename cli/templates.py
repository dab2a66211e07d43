"""``borderlink template`` / ``validate``: write and check message bodies before sealing them."""

from __future__ import annotations

import click
import msgspec

from cli.files import input_name, read_bytes
from cli.options import Command, OneOf
from cli.output import emit, json_option
from protocol.errors import ValidationError
from protocol.schemas import MESSAGE_TYPES, decode_body, encode_body, template

TYPE_ARG = click.argument("type_name", metavar="TYPE", type=OneOf(list(MESSAGE_TYPES)))


@click.command("template", cls=Command)
@TYPE_ARG
def template_cmd(type_name: str) -> None:
    """Print a filled example message of TYPE as JSON, to edit and then seal."""
    body = encode_body(template(type_name))
    click.echo(msgspec.json.format(body, indent=2).decode())


@click.command("validate", cls=Command)
@TYPE_ARG
@click.argument("file", metavar="FILE")
@json_option
def validate_cmd(type_name: str, file: str, as_json: bool) -> None:
    """Check that FILE ('-' for stdin) is a valid TYPE message body."""
    data = read_bytes(file)
    try:
        msg = decode_body(type_name, data, what=input_name(file))
    except ValidationError as exc:
        if as_json:  # the verdict on stdout; the error still goes to stderr and sets exit 1
            emit({"valid": False, "type": type_name, "path": exc.path, "rule": exc.rule}, True, str)
        raise
    result = {"valid": True, "type": type_name, "path": None, "rule": None}
    name = "<stdin>" if file == "-" else file
    version = msg.meta.schema_version
    emit(result, as_json, lambda _: f"ok: {name} is a valid {type_name} (schema {version})")
