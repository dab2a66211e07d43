"""Key changes, both ways (PROTOCOL.md 13): this node rotating, renewing or revoking its own keys,
and applying the statements its peers send about theirs.

Own changes write the keystore first, then the card, then (in one unit) the audit entry, the
statements queued for every trusted peer and the sequence announced, so a crash leaves either the
old keys or the new ones with their announcement (:func:`resume` finishes one the crash cut off).
A peer's statement is checked by keys/statements.py and applied in one unit with its audit entry;
a refusal is audited and kept for ``status`` before it is raised. Files and units; no HTTP, no
clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from keys.card import Card, make_card, parse_card
from keys.keyring import Keyring, decode_keyring, encode_keyring, rotate
from keys.keystore import (
    open_keystore,
    profile_of,
    read_keystore_file,
    seal_keystore,
    write_keystore_file,
)
from keys.statements import (
    REASONS,
    Revocation,
    check_order,
    decide_card,
    make_revocation,
    parse_card_statement,
    parse_revocation,
    peek_card,
    revocation_effect,
    sign_receipt,
    split_certificate,
    utc,
)
from keys.tls import make_certificate
from keys.trust import PeerRecord
from node.auditing import record
from node.home import Home, write_private
from node.initialise import DAY, write_card
from node.peer_info import parsed_card
from node.storage import Reads, Store, Unit
from node.storage.rows import RevokedKey
from protocol.errors import (
    Rejected,
    StatementRefused,
    TrustError,
    UsageError,
)
from protocol.identity import Identity


class KeysChanged(msgspec.Struct, frozen=True, kw_only=True):
    """What a custodian's key command did, as the CLI prints it."""

    kind: str  # rotated | renewed | revoked
    name: str
    node_id: str
    fingerprint: str
    seq: int
    valid_until: int
    peers_notified: int
    previous_fingerprint: str | None = None
    overlap_until: int | None = None
    reason: str | None = None
    revocation_certificate: str | None = None
    held: int = 0  # outbox rows held (revocation)


# -- this node ------------------------------------------------------------------------------------


def _unlock(home: Home, passphrase: bytes) -> tuple[Keyring, bytes]:
    data = read_keystore_file(home.keystore)
    return decode_keyring(open_keystore(data, passphrase)), data


def _own_card(home: Home) -> tuple[Card, str]:
    text = home.card.read_text()
    return parse_card(text, now=None), text


def own_revocation(reads: Reads, card: Card) -> RevokedKey | None:
    """This node's current key's revocation, if it was revoked."""
    for rev in reads.revoked_keys(card.node_id):
        if rev.key == card.body.sign_key:
            return rev
    return None


def refuse_if_revoked(reads: Reads, card: Card) -> None:
    rev = own_revocation(reads, card)
    if rev is not None:
        raise TrustError(
            f"this node's key was revoked ({rev.reason}) on {utc(rev.at)}: it cannot rotate "
            "or renew",
            hint="set up a new node with 'borderlink init --home NEW_HOME' and have your "
            "peers or coordinator introduce it",
        )


def write_revocation_certificate(home: Home, identity: Identity, card: Card, *, now: int) -> str:
    """One file, a revocation per reason, signed now: for the day the keystore is lost or
    stolen (``borderlink keys revoke --certificate FILE``). Compromised means since the card."""
    revs = [
        make_revocation(
            identity, reason=reason, issued_at=now, since=card.body.valid_from
        ).armored()
        for reason in REASONS
    ]
    text = (
        f"Revocation certificate of borderlink node '{card.name}'\n"
        f"fingerprint {card.identity.fingerprint}, key sequence {card.seq}\n"
        "Anyone holding this file can revoke the node's key: print it or store it away from "
        "the node.\nUse: borderlink keys revoke --certificate FILE --reason "
        "compromised|retired|superseded\n\n" + "\n".join(revs)
    )
    write_private(home.revocation, text)
    return str(home.revocation)


def refresh_revocation_certificate(home: Home, identity: Identity, card: Card, *, now: int) -> bool:
    """At start: a crash between writing the rotated card and its certificate leaves the old
    key's certificate in the home; write the current key's. A missing file stays missing (the
    custodian was told to store it away from the node)."""
    try:
        text = home.revocation.read_text(encoding="ascii")
        stale = any(r.body.key != card.body.sign_key for r in split_certificate(text).values())
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError, Rejected):
        stale = True  # cut off mid-write: rewritten whole
    if not stale:
        return False
    write_revocation_certificate(home, identity, card, now=now)
    return True


def _announce(u: Unit, card: Card, kind: str, statement: str, *, actor: str, detail: str) -> int:
    """Queue ``statement`` for every trusted peer, audit it, note it for status."""
    peers = [p for p in u.peers() if p.status == "trusted"]
    for p in peers:
        u.enqueue_notice(p.node_id, kind, statement)
    record(
        u,
        "key.revoked" if kind == "revocation" else "key.rotated",
        actor,
        outcome=kind if kind != "revocation" else "revoked",
        detail=detail,
        peer=card.name,
        peer_id=card.node_id.hex(),
    )
    u.add_key_event(card.name, f"own.{kind}", "announced", f"seq {card.seq}: {detail}")
    return len(peers)


def _reseal(home: Home, ring: Keyring, passphrase: bytes, data: bytes) -> None:
    sealed = seal_keystore(encode_keyring(ring), passphrase, profile=profile_of(data))
    write_keystore_file(home.keystore, sealed, overwrite=True)


def rotate_own(
    home: Home, store: Store, passphrase: bytes, *, now: int, overlap_days: int, actor: str
) -> tuple[KeysChanged, Identity, Card]:
    """New signing, encryption and TLS keys; the old decryption key kept for the overlap."""
    card, _ = _own_card(home)
    refuse_if_revoked(store, card)
    ring, data = _unlock(home, passphrase)
    new_keys = Identity.generate()
    new_ring, link = rotate(ring, card, new_keys, now=now, overlap=overlap_days * DAY)
    identity = new_ring.identity()
    body = card.body
    new_card = make_card(
        identity,
        name=body.name,
        unit_type=body.unit_type,
        country=body.country,
        location=body.location,
        endpoints=list(body.endpoints),
        valid_from=now,
        valid_until=max(body.valid_until, now + DAY),
        tls_cert=make_certificate(identity, now=now),
        seq=link.seq,
        rotations=[*body.rotations, link],
    )
    new_ring = msgspec.structs.replace(new_ring, card=new_card.armored())
    _reseal(home, new_ring, passphrase, data)  # the keys first: a card without them is useless
    write_card(home, new_card)
    cert = write_revocation_certificate(home, identity, new_card, now=now)
    old_fp = card.identity.fingerprint
    with store.unit(now) as u:
        n = _announce(
            u,
            new_card,
            "rotation",
            new_card.armored(),
            actor=actor,
            detail=f"seq {link.seq}: {old_fp} -> {new_card.identity.fingerprint}, old key "
            f"accepted until {utc(link.overlap_until)}",
        )
    return (
        KeysChanged(
            kind="rotated",
            name=body.name,
            node_id=new_card.node_id.hex(),
            fingerprint=new_card.identity.fingerprint,
            previous_fingerprint=old_fp,
            seq=link.seq,
            valid_until=new_card.body.valid_until,
            overlap_until=link.overlap_until,
            peers_notified=n,
            revocation_certificate=cert,
        ),
        identity,
        new_card,
    )


def renew_own(
    home: Home, store: Store, passphrase: bytes, *, now: int, valid_days: int, actor: str
) -> tuple[KeysChanged, Identity, Card]:
    """The same keys, a card with a later expiry and the next sequence number."""
    if not 1 <= valid_days <= 3650:
        raise UsageError("--valid-days must be between 1 and 3650")
    card, _ = _own_card(home)
    refuse_if_revoked(store, card)
    ring, data = _unlock(home, passphrase)
    identity = ring.identity()
    body = card.body
    until = now + valid_days * DAY
    if until <= body.valid_until:
        raise UsageError(
            f"the card already runs until {utc(body.valid_until)}; a renewal must end later",
            hint="give a larger --valid-days",
        )
    new_card = make_card(
        identity,
        name=body.name,
        unit_type=body.unit_type,
        country=body.country,
        location=body.location,
        endpoints=list(body.endpoints),
        valid_from=now,
        valid_until=until,
        tls_cert=body.tls_cert,
        seq=card.seq + 1,
        rotations=list(body.rotations),
    )
    _reseal(home, msgspec.structs.replace(ring, card=new_card.armored()), passphrase, data)
    write_card(home, new_card)
    with store.unit(now) as u:
        n = _announce(
            u,
            new_card,
            "renewal",
            new_card.armored(),
            actor=actor,
            detail=f"seq {new_card.seq}: valid until {utc(until)}",
        )
    return (
        KeysChanged(
            kind="renewed",
            name=body.name,
            node_id=card.node_id.hex(),
            fingerprint=card.identity.fingerprint,
            seq=new_card.seq,
            valid_until=until,
            peers_notified=n,
        ),
        identity,
        new_card,
    )


def revoke_own(
    home: Home,
    store: Store,
    *,
    now: int,
    actor: str,
    reason: str,
    passphrase: bytes | None = None,
    certificate: str | None = None,
    since: int | None = None,
) -> KeysChanged:
    """Revoke this node's key with the keystore (``passphrase``) or without it (a revocation
    certificate's text). Queued for every trusted peer; everything undelivered is held."""
    if reason not in REASONS:
        raise UsageError(f"--reason must be one of {', '.join(REASONS)}")
    card, _ = _own_card(home)
    if certificate is not None:
        try:
            rev = split_certificate(certificate).get(reason)
        except Rejected as exc:
            raise UsageError(f"not a revocation certificate: {exc.message}") from exc
        if rev is None:
            raise UsageError(f"the certificate holds no revocation for reason '{reason}'")
        if rev.body.node_id != card.node_id:
            raise UsageError("the certificate is for another node than this home's")
        known = {card.body.sign_key, *(lk.old_key for lk in card.body.rotations)}
        if rev.body.key not in known:
            raise UsageError("the certificate revokes a key this node never had")
    elif passphrase is not None:
        ring, _data = _unlock(home, passphrase)
        rev = make_revocation(ring.identity(), reason=reason, issued_at=now, since=since)
    else:
        raise UsageError("give the keystore passphrase or --certificate FILE")
    with store.unit(now) as u:
        already = any(r.key == rev.body.key for r in u.revoked_keys(card.node_id))
        if already:
            raise UsageError("that key is already revoked")
        u.put_revoked_key(_revoked_key(rev, now))
        held = 0
        if revocation_effect(card, rev) == "node":
            why = f"this node's key was revoked ({reason}) on {utc(now)}"
            held = sum(u.hold_outbox(p.node_id, why) for p in u.peers())
        n = _announce(
            u,
            card,
            "revocation",
            rev.armored(),
            actor=actor,
            detail=f"{reason}: {_fingerprint(rev)}",
        )
    return KeysChanged(
        kind="revoked",
        name=card.name,
        node_id=card.node_id.hex(),
        fingerprint=_fingerprint(rev),
        seq=card.seq,
        valid_until=card.body.valid_until,
        peers_notified=n,
        reason=reason,
        held=held,
    )


def _fingerprint(rev: Revocation) -> str:
    from protocol.identity import fingerprint_of

    return fingerprint_of(rev.body.key)


def _revoked_key(rev: Revocation, now: int) -> RevokedKey:
    return RevokedKey(
        node=rev.body.node_id,
        key=rev.body.key,
        reason=rev.body.reason,
        since=rev.body.since,
        at=now,
        statement=rev.armored(),
    )


def resume(store: Store, card: Card, *, now: int, actor: str = "node") -> bool:
    """At start: a crash after the keystore and card were written and before the announcement
    was stored leaves a card of a later seq that no peer was told of; announce it now. (A second
    announcement is harmless: peers answer ``unchanged``.)"""
    if card.seq == 0:
        return False
    text = card.armored()
    if any(n.statement == text for n in store.key_notices()):
        return False
    if any(
        e.kind.startswith("own.") and e.detail.startswith(f"seq {card.seq}:")
        for e in store.key_events(200)
    ):
        return False
    kind = (
        "rotation" if card.body.rotations and card.body.rotations[-1].seq == card.seq else "renewal"
    )
    with store.unit(now) as u:
        _announce(u, card, kind, text, actor=actor, detail=f"seq {card.seq}: announced at start")
    return True


# -- peers' statements ----------------------------------------------------------------------------


class Applied(msgspec.Struct, frozen=True):
    outcome: str  # applied | unchanged
    peer: str
    receipt: bytes


def apply_statement(
    store: Store,
    me: Identity,
    text: str,
    *,
    now: int,
    source: str,
    sample: Callable[[str | None, str, str | None], int | None] | None = None,
) -> Applied:
    """Check a peer's key statement and apply it, or audit the refusal and raise it.

    Anyone may post a statement (PROTOCOL.md 13.5), and replay a peer's old ones, so refusals
    are audited sampled (``sample(source, reason, peer)``: the running count to record, or None
    to let this one pass unrecorded: node/rejections.py), per peer when the statement names a
    known one, else per source address (as rejected envelopes are); only refusals naming a
    known peer become key events in ``status``."""
    refusal: StatementRefused | None = None
    with store.unit(now) as u:
        try:
            outcome, peer = _apply(u, text, now=now)
        except StatementRefused as exc:
            refusal = exc
            name = exc.peer or "?"
            known = exc.peer is not None and exc.peer != "?"
            n = (
                1
                if sample is None
                else sample(None if known else source, exc.reason, name if known else None)
            )
            if n is not None:
                detail = exc.message if n == 1 else f"{n} so far; last: {exc.message}"
                record(
                    u,
                    "key.refused",
                    f"peer:{name}" if known else "anonymous",
                    outcome=exc.reason,
                    detail=detail[:200],
                    peer=name if known else None,
                    source=source,
                )
                if known:  # anonymous junk must not push a peer's real changes out of status
                    u.add_key_event(name, "refused", exc.reason, detail)
    if refusal is not None:
        raise refusal
    return Applied(outcome, peer, sign_receipt(me, text))


def _refuse(reason: str, message: str, peer: str) -> StatementRefused:
    return StatementRefused(reason, message, peer=peer)


def _apply(u: Unit, text: str, *, now: int) -> tuple[str, str]:
    head = text.lstrip()[:40]
    if head.startswith("-----BEGIN BORDERLINK REVOCATION-----"):
        return _apply_revocation(u, text, now=now)
    if not head.startswith("-----BEGIN BORDERLINK CARD-----"):
        raise _refuse("malformed", "not a key statement (a card or a revocation)", "?")
    try:
        node_id, seq = peek_card(text)  # no cryptography until the statement could apply
    except StatementRefused as exc:
        raise _refuse(exc.reason, exc.message, "?") from exc
    rec = u.peer_by_id(node_id)
    if rec is None:
        raise _refuse("unknown_node", "the statement is for a node this node does not know", "?")
    name = rec.name
    if rec.status == "revoked":
        raise _refuse("revoked", f"peer '{name}' is revoked", name)
    known = parsed_card(rec.card)
    try:
        if check_order(known, seq, same_text=text.strip() == rec.card.strip()) == "unchanged":
            return "unchanged", name
        new = parse_card_statement(text, now=now)
    except StatementRefused as exc:
        raise _refuse(exc.reason, exc.message, name) from exc
    for r in u.revoked_keys(rec.node_id):
        if new.body.rotations and new.body.rotations[-1].old_key == r.key:
            raise _refuse("revoked", f"the key handing '{name}' over was revoked", name)
    try:
        change = decide_card(known, new, known_text=rec.card, new_text=new.armored())
    except StatementRefused as exc:
        raise _refuse(exc.reason, exc.message, name) from exc
    if change == "unchanged":
        return "unchanged", name
    u.put_peer(
        msgspec.structs.replace(rec, card=new.armored(), fingerprint=new.identity.fingerprint)
    )
    if change == "rotated":
        link = new.body.rotations[-1]
        u.put_rotation_applied(rec.node_id, link.seq)
        detail = (
            f"seq {new.seq}: {known.identity.fingerprint} -> {new.identity.fingerprint}, old "
            f"key accepted until {utc(link.overlap_until)}"
        )
    else:
        detail = f"seq {new.seq}: valid until {utc(new.body.valid_until)}"
    record(
        u,
        "key.rotated",
        f"peer:{name}",
        outcome=change,
        detail=detail,
        peer=name,
        peer_id=rec.node_id.hex(),
    )
    u.add_key_event(name, change, "applied", detail)
    return "applied", name


def _apply_revocation(u: Unit, text: str, *, now: int) -> tuple[str, str]:
    try:
        rev = parse_revocation(text)
    except Rejected as exc:
        raise _refuse(exc.reason, exc.message, "?") from exc
    rec = u.peer_by_id(rev.body.node_id)
    if rec is None:
        raise _refuse("unknown_node", "the revocation is for a node this node does not know", "?")
    name = rec.name
    card = parsed_card(rec.card)
    if any(r.key == rev.body.key for r in u.revoked_keys(rec.node_id)):
        return "unchanged", name
    try:
        effect = revocation_effect(card, rev, u.rotations_applied(rec.node_id))
    except StatementRefused as exc:
        raise _refuse(exc.reason, exc.message, name) from exc
    u.put_revoked_key(_revoked_key(rev, now))
    reason, since = rev.body.reason, rev.body.since
    detail = f"{reason}: {_fingerprint(rev)}"
    if effect == "node":
        revoke_peer(u, rec, reason=reason, since=since, now=now, by=f"its owner ({reason})")
        if reason == "compromised":
            n = u.mark_suspect(
                rec.node_id,
                float(since or 0),
                f"'{name}' reported its key compromised since {utc(since or 0)}",
            )
            detail += f"; {n} inbox message(s) marked suspect"
    else:
        detail += " (a key it had replaced: no longer accepted)"
    record(
        u,
        "key.revoked",
        f"peer:{name}",
        outcome=reason,
        detail=detail,
        peer=name,
        peer_id=rec.node_id.hex(),
    )
    u.add_key_event(name, "revoked", "applied", detail)
    return "applied", name


def revoke_peer(
    u: Unit, rec: PeerRecord, *, reason: str, since: int | None, now: float, by: str
) -> int:
    """Mark ``rec`` revoked and hold what was queued for it; returns the rows held."""
    u.put_peer(
        msgspec.structs.replace(
            rec, status="revoked", revoked_at=int(now), revoke_reason=reason, revoke_since=since
        )
    )
    return u.hold_outbox(rec.node_id, f"peer '{rec.name}' was revoked by {by} on {utc(now)}")
