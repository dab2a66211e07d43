"""``borderlink init``: create the node identity, its encrypted keystore and its signed card."""

from __future__ import annotations

import click

from cli.context import Ctx
from cli.options import Command, OneOf, WholeNumber
from cli.output import emit, json_option, note
from cli.passphrase import passphrase_options


@click.command("init", cls=Command)
@click.option("--name", required=True, help="Short unique node name, e.g. bar-pcu.")
@click.option(
    "--unit-type",
    required=True,
    type=OneOf(["PCU", "ACCU", "JAITF", "LBCU", "coordinator", "other"]),
    help="PCU port, ACCU air cargo, JAITF airport task force, LBCU land border, or coordinator.",
)
@click.option("--country", required=True, help="ISO 3166 alpha-2 country code, e.g. ME.")
@click.option("--location", required=True, help="UN/LOCODE of the unit, e.g. MEBAR.")
@click.option("--endpoint", "endpoints", multiple=True, help="URL peers reach this node at.")
@click.option("--valid-days", default=365, show_default=True, type=WholeNumber(1, 3650))
@click.option(
    "--kdf-profile",
    type=OneOf(["moderate", "interactive"]),
    default="moderate",
    show_default=True,
    help="Argon2id cost for the keystore; 'interactive' is faster and weaker.",
)
@passphrase_options
@json_option
@click.pass_obj
def init_cmd(
    ctx: Ctx,
    name: str,
    unit_type: str,
    country: str,
    location: str,
    endpoints: tuple[str, ...],
    valid_days: int,
    kdf_profile: str,
    passphrase_fd: int | None,
    passphrase_file: str | None,
    as_json: bool,
) -> None:
    """Create this node's identity and keystore in --home."""
    from cli.passphrase import get_passphrase
    from node.initialise import new_card
    from node.local import initialise
    from protocol.identity import Identity

    home = ctx.home
    home.check_new()  # before asking for a passphrase; write_home checks again as it creates
    identity = Identity.generate()
    card = new_card(
        identity,
        name=name,
        unit_type=unit_type,
        country=country,
        location=location,
        endpoints=endpoints,
        valid_days=valid_days,
        now=ctx.now(),
    )
    passphrase = get_passphrase(fd=passphrase_fd, file=passphrase_file, confirm=True)
    initialise(
        home,
        identity,
        card,
        passphrase=passphrase,
        kdf_profile=kdf_profile,
        actor=ctx.actor(),
    )
    from node.keychange import write_revocation_certificate

    certificate = write_revocation_certificate(home, identity, card, now=ctx.now())
    info = {
        "name": name,
        "node_id": identity.node_id.hex(),
        "fingerprint": identity.public.fingerprint,
        "home": str(home.root),
        "revocation_certificate": certificate,
    }
    note(f"created identity '{name}' in {home.root}")
    note(f"revocation certificate: {certificate}")
    note(
        "print it or store it away from the node: with it, 'borderlink keys revoke "
        "--certificate FILE' revokes this key even if the keystore or its passphrase is lost"
    )
    emit(info, as_json, lambda d: f"node id:     {d['node_id']}\nfingerprint: {d['fingerprint']}")
