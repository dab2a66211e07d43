"""``borderlink init``: create the node identity, its encrypted keystore and its signed card."""

from __future__ import annotations

import click

from cli.context import Ctx
from cli.options import Command, OneOf, WholeNumber
from cli.output import emit, json_option, note
from cli.passphrase import passphrase_options

DAY = 86400


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
    from keys.card import make_card
    from protocol.identity import Identity
    from keys.keystore import seal_keystore, write_keystore_file

    home = ctx.home
    if home.exists():
        home.create()  # raises the "already holds an identity" error
    identity = Identity.generate()
    now = ctx.now()
    card = make_card(
        identity,
        name=name,
        unit_type=unit_type,
        country=country.upper(),
        location=location.upper(),
        endpoints=list(endpoints),
        valid_from=now,
        valid_until=now + valid_days * DAY,
    )
    passphrase = get_passphrase(fd=passphrase_fd, file=passphrase_file, confirm=True)
    home.create()
    write_keystore_file(
        home.keystore, seal_keystore(identity.secret_bytes(), passphrase, profile=kdf_profile)
    )
    home.card.write_text(card.armored())
    from node.audit_store import cli_actor, event

    store = ctx.store()
    who = {"peer": name, "peer_id": identity.node_id.hex()}
    with store.transaction() as db:
        store.audit_append(
            db,
            event(
                "node.initialised",
                cli_actor(),
                outcome=unit_type,
                detail=f"{location.upper()} {country.upper()}",
                **who,
            ),
        )
        store.audit_append(
            db,
            event(
                "key.created",
                cli_actor(),
                outcome=f"kdf {kdf_profile}",
                detail=identity.public.fingerprint,
                **who,
            ),
        )
    info = {
        "name": name,
        "node_id": identity.node_id.hex(),
        "fingerprint": identity.public.fingerprint,
        "home": str(home.root),
    }
    note(f"created identity '{name}' in {home.root}")
    emit(info, as_json, lambda d: f"node id:     {d['node_id']}\nfingerprint: {d['fingerprint']}")
