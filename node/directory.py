"""Introductions by a coordinator (PROTOCOL.md 13.8): publishing a signed directory of the units a
coordinator verified, and importing one from a coordinator this node verified.

Importing trusts each listed unit this node does not know as *introduced by* the coordinator; it
never weakens what a custodian decided: a peer verified by fingerprint stays as it is, a revoked
one stays revoked, a known name under another key is blocked (as ``peers add`` blocks it), never
replaced. A refused directory stores nothing but its audit entry, written before the error is
raised. The format and the signer's checks are keys/directory.py's; this module reads and writes
storage through units, and no clock (``now`` is passed in).
"""

from __future__ import annotations

import msgspec

from keys.card import Card, parse_card
from keys.directory import (
    Directory,
    check_coordinator,
    check_sequence,
    make_directory,
    parse_directory,
    verify_directory,
)
from keys.statements import decide_card, utc
from keys.trust import PeerRecord
from node.auditing import record
from node.initialise import DAY
from node.peer_info import parsed_card
from node.storage import Reads, Store, Unit
from protocol.errors import (
    BorderlinkError,
    Rejected,
    StatementRefused,
    TrustError,
    UnknownPeer,
    UsageError,
)
from protocol.identity import Identity
from protocol.text import shown

MAX_VALID_DAYS = 365


class Imported(msgspec.Struct, frozen=True):
    """What importing a directory did, unit by unit. ``introduced``, ``upgraded`` (trusted on
    first use, now introduced) and ``updated`` (a newer card applied) hold names; ``kept``,
    ``blocked`` and ``skipped`` hold ``NAME: why`` (a card that does not read: ``card N: why``)."""

    coordinator: str
    seq: int
    introduced: list[str]
    upgraded: list[str]
    kept: list[str]
    blocked: list[str]
    skipped: list[str]
    updated: list[str] = msgspec.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.introduced or self.upgraded or self.updated or self.blocked)


class Published(msgspec.Struct, frozen=True):
    """A directory this coordinator signed: its armored text, sequence number and how many units
    it lists; ``left_out``: ``NAME: why`` for peers not listed (an expired card)."""

    text: str
    seq: int
    units: int
    left_out: list[str] = msgspec.field(default_factory=list)


# -- importing -------------------------------------------------------------------------------------


def _coordinator(reads: Reads, directory: Directory) -> PeerRecord:
    """The trusted, fingerprint-verified coordinator that signed ``directory``, whose previous
    directories were all older; else the refusal."""
    rec = reads.peer_by_id(directory.coordinator)
    card = parsed_card(rec.card) if rec is not None and rec.card else None
    check_coordinator(rec, card)
    assert rec is not None and card is not None  # check_coordinator refused otherwise
    verify_directory(directory, card)
    check_sequence(directory, reads.directory_seq(rec.node_id), name=rec.name)
    return rec


def _refused(
    store: Store, exc: StatementRefused, directory: Directory | None, *, now: float, actor: str
) -> StatementRefused:
    """Audit a refused directory in a unit of its own; it stores nothing else."""
    with store.unit(now) as u:
        record(
            u,
            "directory.imported",
            actor,
            outcome=exc.reason,
            detail=exc.message[:200],
            peer=exc.peer,
            peer_id=directory.coordinator.hex() if directory is not None else None,
        )
    return exc


def _listed_cards(directory: Directory, now: float) -> list[Card | str]:
    """Each listed card parsed and checked at ``now``, or the line saying why it is skipped."""
    out: list[Card | str] = []
    for i, text in enumerate(directory.body.cards):
        try:
            out.append(parse_card(text, now=int(now)))
        except Rejected as exc:
            out.append(f"card {i + 1}: {exc.message}")
    return out


def import_directory(store: Store, text: str, *, me: bytes, now: float, actor: str) -> Imported:
    """Check ``text`` (an armored directory) and trust the units it lists as introduced by its
    coordinator; ``me`` is this node's id. Raises the StatementRefused that says why a directory
    is refused, after auditing it."""
    directory: Directory | None = None
    try:
        directory = parse_directory(text, now=int(now))
        _coordinator(store, directory)  # before parsing 500 cards of a directory to refuse
    except StatementRefused as exc:
        raise _refused(store, exc, directory, now=now, actor=actor) from None
    listed = _listed_cards(directory, now)
    refusal: StatementRefused | None = None
    with store.unit(now) as u:
        try:
            coordinator = _coordinator(u, directory)  # again, in the unit that writes
        except StatementRefused as exc:
            refusal = exc
            record(
                u,
                "directory.imported",
                actor,
                outcome=exc.reason,
                detail=exc.message[:200],
                peer=exc.peer,
                peer_id=directory.coordinator.hex(),
            )
        else:
            imported = _Import(u, coordinator.name, me=me, now=now, actor=actor)
            for item in listed:
                imported.take(item)
            u.set_directory_seq(coordinator.node_id, directory.seq)
            result = imported.result(directory.seq)
            record(
                u,
                "directory.imported",
                actor,
                outcome="imported",
                detail=f"seq {directory.seq}: {summary(result)}",
                peer=coordinator.name,
                peer_id=coordinator.node_id.hex(),
            )
    if refusal is not None:
        raise refusal
    return result


def summary(result: Imported) -> str:
    """``2 introduced, 0 upgraded, ...``: the counts, as the audit entry and the CLI say them."""
    parts = [
        (len(result.introduced), "introduced"),
        (len(result.upgraded), "upgraded"),
        (len(result.updated), "updated"),
        (len(result.kept), "kept"),
        (len(result.blocked), "blocked"),
        (len(result.skipped), "skipped"),
    ]
    return ", ".join(f"{n} {what}" for n, what in parts)


class _Import:
    """The listed cards of one directory, taken one by one in the unit that imports them."""

    def __init__(self, u: Unit, coordinator: str, *, me: bytes, now: float, actor: str) -> None:
        self.u, self.coordinator, self.me, self.now, self.actor = u, coordinator, me, now, actor
        self.introduced: list[str] = []
        self.upgraded: list[str] = []
        self.updated: list[str] = []
        self.kept: list[str] = []
        self.blocked: list[str] = []
        self.skipped: list[str] = []
        self.seen: set[bytes | str] = set()
        self.pins: dict[str, PeerRecord] = {}  # the TLS pins stored cards hold
        for rec in u.peers():
            pin = _pin_of(rec.card)
            if pin is not None:
                self.pins.setdefault(pin, rec)

    def result(self, seq: int) -> Imported:
        return Imported(
            self.coordinator,
            seq,
            self.introduced,
            self.upgraded,
            self.kept,
            self.blocked,
            self.skipped,
            self.updated,
        )

    def _audit(self, kind: str, card: Card, *, outcome: str, detail: str) -> None:
        record(
            self.u,
            kind,
            self.actor,
            outcome=outcome,
            detail=detail,
            peer=card.name,
            peer_id=card.node_id.hex(),
        )

    def take(self, item: Card | str) -> None:
        if isinstance(item, str):
            self.skipped.append(item)
            return
        card, name = item, item.name
        if card.node_id == self.me:
            self.skipped.append(f"{name}: this node's own card")
            return
        if card.node_id in self.seen or name in self.seen:
            self.skipped.append(f"{name}: listed twice in the directory")
            return
        self.seen.update((card.node_id, name))
        by_id = self.u.peer_by_id(card.node_id)
        if by_id is not None and by_id.name != name:
            if by_id.status == "revoked":
                self.kept.append(f"{name}: revoked (as {shown(by_id.name)}), kept")
            else:
                self.skipped.append(f"{name}: its key already belongs to peer {shown(by_id.name)}")
            return
        rec = self.u.peer_by_name(name)
        if rec is None:
            self._introduce(card)
        elif rec.status == "revoked":
            self.kept.append(f"{name}: revoked, kept")
        elif rec.status == "blocked":
            self.blocked.append(f"{name}: already blocked, its key changed; {_verify_hint(rec)}")
        elif rec.node_id != card.node_id:
            self._changed_key(rec, card)
        elif rec.verified_by == "fingerprint":
            self.kept.append(f"{name}: verified by fingerprint, kept")
        else:
            self._known(rec, card)

    def _introduce(self, card: Card) -> None:
        pin = card.tls_pin
        holder = self.pins.get(pin) if pin is not None else None
        if holder is not None:
            self.skipped.append(
                f"{card.name}: its card pins the TLS certificate of peer {shown(holder.name)}"
            )
            return
        identity = card.identity
        rec = PeerRecord(
            name=card.name,
            node_id=card.node_id,
            fingerprint=identity.fingerprint,
            card=card.armored(),
            verified_by="introduced",
            introduced_by=self.coordinator,
            added_at=int(self.now),
        )
        self.u.put_peer(rec)
        if pin is not None:
            self.pins[pin] = rec
        self._audit(
            "peer.introduced",
            card,
            outcome=f"introduced by {self.coordinator}",
            detail=identity.fingerprint,
        )
        self.introduced.append(card.name)

    def _changed_key(self, rec: PeerRecord, card: Card) -> None:
        """A known name under another node id, no rotation linking them."""
        if rec.verified_by == "fingerprint":
            self.kept.append(
                f"{card.name}: verified by fingerprint, kept; the directory lists another key "
                f"({card.identity.fingerprint})"
            )
            return
        # As ``peers add`` does: nothing goes to it until a custodian compares the new key.
        blocked = msgspec.structs.replace(rec, status="blocked", pending_card=card.armored())
        self.u.put_peer(blocked)
        self.u.hold_outbox(rec.node_id, f"peer '{card.name}' changed its key: blocked")
        self._audit(
            "peer.key_changed",
            card,
            outcome="blocked",
            detail=f"{rec.fingerprint} -> {card.identity.fingerprint} "
            f"(directory of {self.coordinator})",
        )
        self.blocked.append(f"{card.name}: its key changed, blocked; {_verify_hint(blocked)}")

    def _known(self, rec: PeerRecord, card: Card) -> None:
        """A peer trusted on first use or introduced, listed under the node id it has."""
        name = card.name
        known = parsed_card(rec.card)
        new = rec
        if card.seq != known.seq or card.body.sign_key != known.body.sign_key:
            # A rotation or renewal in the directory: the rules of a key statement (13.6).
            try:
                self._not_revoked(card)
                change = decide_card(known, card, known_text=rec.card, new_text=card.armored())
            except StatementRefused as exc:
                self.skipped.append(f"{name}: {exc.reason}: {exc.message}")
                return
            if change == "rotated":
                self.u.put_rotation_applied(rec.node_id, card.seq)
            if change != "unchanged":
                new = msgspec.structs.replace(
                    rec, card=card.armored(), fingerprint=card.identity.fingerprint
                )
                self._audit(
                    "peer.updated",
                    card,
                    outcome=f"{change} (directory of {self.coordinator})",
                    detail=f"seq {card.seq}: {card.identity.fingerprint}, valid until "
                    f"{utc(card.body.valid_until)}",
                )
                self.updated.append(name)
        if rec.verified_by == "tofu":
            new = msgspec.structs.replace(
                new, verified_by="introduced", introduced_by=self.coordinator
            )
            self._audit(
                "peer.introduced",
                card,
                outcome=f"introduced by {self.coordinator} (was tofu)",
                detail=card.identity.fingerprint,
            )
            self.upgraded.append(name)
        elif new is rec:
            self.kept.append(f"{name}: already introduced by {rec.introduced_by or '?'}")
        if new is not rec:
            self.u.put_peer(new)

    def _not_revoked(self, card: Card) -> None:
        link = card.body.rotations[-1] if card.body.rotations else None
        for rev in self.u.revoked_keys(card.node_id):
            if link is not None and link.old_key == rev.key:
                raise StatementRefused(
                    "revoked", f"the key handing '{card.name}' over was revoked", peer=card.name
                )


def _verify_hint(rec: PeerRecord) -> str:
    pending = parsed_card(rec.pending_card) if rec.pending_card else None
    fp = pending.identity.fingerprint if pending is not None else "?"
    return (
        f"compare the new fingerprint with {shown(rec.name)} out of band, then run: "
        f'borderlink peers verify {rec.name} --fingerprint "{fp}"'
    )


def _pin_of(card_text: str) -> str | None:
    try:
        return parsed_card(card_text).tls_pin if card_text else None
    except Rejected:  # a stored card that no longer reads pins nothing to compare
        return None


# -- publishing ------------------------------------------------------------------------------------


def publish_directory(
    store: Store,
    identity: Identity,
    own_card: Card,
    *,
    names: list[str] | None,
    valid_days: int,
    now: float,
    actor: str,
) -> Published:
    """Sign a directory of the peers this coordinator verified by fingerprint (all of them, or
    ``names``), valid for ``valid_days``, under the next sequence number."""
    if own_card.body.unit_type != "coordinator":
        raise BorderlinkError(
            f"this node is a {own_card.body.unit_type}, not a coordinator: its units would "
            "refuse its directory (not_a_coordinator)",
        )
    if identity.public.sign_key != own_card.body.sign_key:
        raise BorderlinkError("the keystore and this node's card belong to different keys")
    if not 1 <= valid_days <= MAX_VALID_DAYS:
        raise UsageError(f"--valid-days must be between 1 and {MAX_VALID_DAYS}")
    issued = int(now)
    until = issued + valid_days * DAY
    with store.unit(now) as u:
        cards, left_out = _chosen(u, names, now=issued)
        if not cards:
            raise BorderlinkError(
                "no peer verified by fingerprint to list in a directory",
                hint="add units with 'borderlink peers add CARD --fingerprint FP'",
            )
        seq = (u.directory_seq(own_card.node_id) or 0) + 1
        try:
            directory = make_directory(
                identity, cards, seq=seq, issued_at=issued, valid_until=until
            )
        except StatementRefused as exc:
            raise BorderlinkError(
                f"cannot publish: {exc.message}", hint="list fewer units (NAME...)"
            ) from exc
        u.set_directory_seq(own_card.node_id, seq)
        record(
            u,
            "directory.published",
            actor,
            outcome=f"seq {seq}",
            detail=f"{len(cards)} unit(s), valid until {utc(until)}",
            peer=own_card.name,
            peer_id=own_card.node_id.hex(),
        )
    return Published(directory.armored(), seq, len(cards), left_out)


def _chosen(reads: Reads, names: list[str] | None, *, now: int) -> tuple[list[Card], list[str]]:
    """The cards to list: every trusted peer verified by fingerprint whose card is valid (those
    that are not are ``left_out``), or exactly ``names``, each of which must be such a peer."""
    if names is None:
        cards, left_out = [], []
        for rec in reads.peers():
            if rec.status != "trusted" or rec.verified_by != "fingerprint":
                continue
            card = parsed_card(rec.card)
            if now >= card.body.valid_until:
                left_out.append(f"{rec.name}: its card expired on {utc(card.body.valid_until)}")
            else:
                cards.append(card)
        return cards, left_out
    chosen = []
    for name in dict.fromkeys(names):
        peer = reads.peer_by_name(name)
        if peer is None:
            raise UnknownPeer(f"no peer named {shown(name)}")
        if peer.status != "trusted":
            raise TrustError(f"peer {shown(name)} is {peer.status}: it goes in no directory")
        if peer.verified_by != "fingerprint":
            how = "trusted on first use" if peer.verified_by == "tofu" else "introduced"
            raise TrustError(
                f"peer {shown(name)} is {how}: a directory lists only units whose fingerprint "
                "this coordinator compared",
                hint=f"compare its fingerprint, then run 'borderlink peers verify {name} "
                "--fingerprint FP'",
            )
        card = parsed_card(peer.card)
        if now >= card.body.valid_until:
            raise TrustError(
                f"the card of peer {shown(name)} expired on {utc(card.body.valid_until)}",
                hint=f"ask {name} to run 'borderlink keys renew'",
            )
        chosen.append(card)
    return chosen, []
