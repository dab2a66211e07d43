"""``verify_log`` against every way a stored log can be tampered with: an edited entry, two entries
swapped, the tail deleted, an entry slipped in, and a checkpoint that was not signed by the log.
Each error names the first bad entry index, because that is what ``audit verify`` prints."""

from __future__ import annotations

import re

import pytest

from protocol.audit import AuditEntry, decode_entry, encode_entry, origin_of, verify_log
from protocol.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from protocol.errors import AuditError
from protocol.identity import Identity
from protocol.merkle import MerkleAccumulator, leaf_hash, root_from_leaf_hashes
from protocol.signednote import UnverifiedNote, Verifier
from tests.conftest import NOW


def entries(n: int) -> list[bytes]:
    return [
        encode_entry(
            AuditEntry(
                time=NOW * 1000 + i, actor="node", kind="message.queued", message_id=f"{i:032x}"
            )
        )
        for i in range(n)
    ]


def roots(log: list[bytes]) -> list[bytes | None]:
    """The roots the node records after each append (audit_store.audit_append)."""
    acc, out = MerkleAccumulator(), []
    for e in log:
        acc.append(leaf_hash(e))
        out.append(acc.root())
    return list(out)


def checkpoint(log: list[bytes], size: int, who: Identity) -> Checkpoint:
    return Checkpoint(
        origin_of(who.node_id), size, root_from_leaf_hashes([leaf_hash(e) for e in log[:size]])
    )


def signed(cp: Checkpoint, who: Identity) -> str:
    return sign_checkpoint(cp, cp.origin, who.signing_key)


def opened(note: str, who: Identity) -> Checkpoint:
    origin = origin_of(who.node_id)
    return open_checkpoint(note, [Verifier(origin, who.public.sign_key)])


def edited(entry: bytes) -> bytes:
    """The same entry with another outcome: still a well-formed entry, so only the tree tells."""
    e = decode_entry(entry)
    e.outcome = "nothing happened"
    return encode_entry(e)


def fails(match: str) -> pytest.RaisesExc[AuditError]:
    return pytest.raises(AuditError, match=f"^{re.escape(match)}$")


@pytest.fixture
def log() -> list[bytes]:
    return entries(20)


# the honest log ----------------------------------------------------------------------------------


def test_an_honest_log_verifies_against_every_checkpoint(log: list[bytes], alice: Identity) -> None:
    cps = [opened(signed(checkpoint(log, s, alice), alice), alice) for s in (5, 12, 20)]
    report = verify_log(log, roots(log), cps)
    assert report.size == 20
    assert report.checkpoint_size == 20
    assert report.root == cps[-1].root_hash


def test_entries_newer_than_the_checkpoint_are_uncovered_not_damage(
    log: list[bytes], alice: Identity
) -> None:
    report = verify_log(log, roots(log), [checkpoint(log, 12, alice)])
    assert (report.size, report.checkpoint_size) == (20, 12)


def test_an_empty_log_with_no_checkpoint_verifies() -> None:
    assert verify_log([], [], []).size == 0


# edited entries ---------------------------------------------------------------------------------


def test_an_edited_entry_is_named_by_its_index(log: list[bytes], alice: Identity) -> None:
    stored = roots(log)
    log[7] = edited(log[7])
    with fails(
        "audit entry 7 is damaged: the tree no longer matches the root recorded when it was appended"
    ):
        verify_log(log, stored, [checkpoint(entries(20), 20, alice)])


def test_an_edited_entry_is_caught_by_the_tree_even_without_a_checkpoint(log: list[bytes]) -> None:
    stored = roots(log)
    log[3] = edited(log[3])
    with fails(
        "audit entry 3 is damaged: the tree no longer matches the root recorded when it was appended"
    ):
        verify_log(log, stored, [])


def test_an_edit_with_the_recorded_roots_recomputed_is_caught_by_the_checkpoint(
    log: list[bytes], alice: Identity
) -> None:
    """The recorded roots are only locators: an attacker who rewrites them too still cannot make
    the signed root, and the report narrows the damage to after the last good checkpoint."""
    cps = [checkpoint(log, 5, alice), checkpoint(log, 10, alice), checkpoint(log, 20, alice)]
    log[13] = edited(log[13])
    with fails(
        "audit log differs from the signed checkpoint of size 20: "
        "the first damaged entry is at or after index 10"
    ):
        verify_log(log, roots(log), cps)


def test_an_entry_that_is_no_longer_an_entry_is_named(log: list[bytes]) -> None:
    log[4] = b'{"v":1,"time":1,"actor":"node","kind":"message.queued",'
    with fails("audit entry 4 is damaged: not a valid entry"):
        verify_log(log, roots(entries(20)), [])


def test_an_entry_with_a_field_the_format_does_not_have_is_damage(log: list[bytes]) -> None:
    log[2] = log[2][:-1] + b',"secret":"x"}'
    with fails("audit entry 2 is damaged: not a valid entry"):
        verify_log(log, [None] * 20, [])


# reordered entries ------------------------------------------------------------------------------


def test_two_swapped_entries_name_the_first(log: list[bytes], alice: Identity) -> None:
    stored = roots(log)
    log[6], log[11] = log[11], log[6]
    with fails(
        "audit entry 6 is damaged: the tree no longer matches the root recorded when it was appended"
    ):
        verify_log(log, stored, [checkpoint(entries(20), 20, alice)])


def test_swapped_rows_with_their_roots_name_the_first(log: list[bytes]) -> None:
    """Swapping whole rows (entry and recorded root) is no better for the attacker."""
    stored = roots(log)
    log[6], log[11] = log[11], log[6]
    stored[6], stored[11] = stored[11], stored[6]
    with fails(
        "audit entry 6 is damaged: the tree no longer matches the root recorded when it was appended"
    ):
        verify_log(log, stored, [])


def test_a_swap_with_roots_recomputed_is_caught_by_the_checkpoint(
    log: list[bytes], alice: Identity
) -> None:
    cp = checkpoint(log, 20, alice)
    log[0], log[1] = log[1], log[0]
    with fails(
        "audit log differs from the signed checkpoint of size 20: "
        "the first damaged entry is at or after index 0"
    ):
        verify_log(log, roots(log), [cp])


# deleted tail -----------------------------------------------------------------------------------


def test_a_deleted_tail_is_missing_entries_from_that_index(
    log: list[bytes], alice: Identity
) -> None:
    cp = checkpoint(log, 20, alice)
    with fails(
        "audit log has 14 entries but a signed checkpoint has 20: "
        "entries from index 14 on are missing"
    ):
        verify_log(log[:14], roots(log)[:14], [cp])


def test_a_deleted_tail_names_the_largest_checkpoint(log: list[bytes], alice: Identity) -> None:
    cps = [checkpoint(log, s, alice) for s in (20, 4, 16)]
    with fails(
        "audit log has 10 entries but a signed checkpoint has 20: "
        "entries from index 10 on are missing"
    ):
        verify_log(log[:10], roots(log)[:10], cps)


def test_a_log_deleted_entirely_is_missing_everything(log: list[bytes], alice: Identity) -> None:
    with fails(
        "audit log has 0 entries but a signed checkpoint has 20: "
        "entries from index 0 on are missing"
    ):
        verify_log([], [], [checkpoint(log, 20, alice)])


def test_a_deleted_tail_after_the_last_checkpoint_cannot_be_seen_locally(
    log: list[bytes], alice: Identity
) -> None:
    """Nothing signed covers those entries: only a witness that saw a larger checkpoint can tell."""
    report = verify_log(log[:15], roots(log)[:15], [checkpoint(log, 12, alice)])
    assert (report.size, report.checkpoint_size) == (15, 12)


# extra entries ----------------------------------------------------------------------------------


def test_an_entry_slipped_into_the_middle_is_named(log: list[bytes], alice: Identity) -> None:
    """Rows from 9 on are renumbered; the new row needs some root, here the one row 9 had."""
    stored = roots(log)
    tampered = [*log[:9], entries(30)[25], *log[9:]]
    with fails(
        "audit entry 9 is damaged: the tree no longer matches the root recorded when it was appended"
    ):
        verify_log(tampered, [*stored[:9], stored[9], *stored[9:]], [checkpoint(log, 20, alice)])


def test_an_entry_slipped_in_with_its_own_root_is_caught_at_the_next(log: list[bytes]) -> None:
    """Given the right root for itself, the forged entry looks appended; the entry after it is
    the first whose recorded root no longer matches, so that is the index named."""
    stored = roots(log)
    tampered = [*log[:9], entries(30)[25], *log[9:]]
    own_root = roots(tampered)[9]
    with fails(
        "audit entry 10 is damaged: the tree no longer matches the root recorded when it was appended"
    ):
        verify_log(tampered, [*stored[:9], own_root, *stored[9:]], [])


def test_an_entry_slipped_in_with_roots_recomputed_is_caught_by_the_checkpoint(
    log: list[bytes], alice: Identity
) -> None:
    cps = [checkpoint(log, 8, alice), checkpoint(log, 20, alice)]
    tampered = [*log[:9], entries(30)[25], *log[9:]]
    with fails(
        "audit log differs from the signed checkpoint of size 20: "
        "the first damaged entry is at or after index 8"
    ):
        verify_log(tampered, roots(tampered), cps)


def test_an_entry_appended_after_the_checkpoint_is_only_uncovered(
    log: list[bytes], alice: Identity
) -> None:
    """An extra entry at the end is indistinguishable from a real new event until it is signed."""
    cp = checkpoint(log, 20, alice)
    longer = [*log, entries(30)[25]]
    report = verify_log(longer, [*roots(log), None], [cp])
    assert (report.size, report.checkpoint_size) == (21, 20)


# forged checkpoints -----------------------------------------------------------------------------


def test_a_checkpoint_signed_by_another_key_does_not_open(
    log: list[bytes], alice: Identity, mallory: Identity
) -> None:
    cp = checkpoint(log, 20, alice)
    forged = sign_checkpoint(cp, cp.origin, mallory.signing_key)  # right name, wrong key
    with pytest.raises(UnverifiedNote):
        opened(forged, alice)


def test_a_checkpoint_with_a_forged_root_is_reported_at_its_size(
    log: list[bytes], alice: Identity
) -> None:
    cp = checkpoint(log, 12, alice)
    forged = Checkpoint(cp.origin, 12, bytes(32))
    with fails(
        "audit log differs from the signed checkpoint of size 12: "
        "the first damaged entry is at or after index 5"
    ):
        verify_log(log, roots(log), [checkpoint(log, 5, alice), forged])


def test_a_checkpoint_of_another_log_size_is_missing_entries(
    log: list[bytes], alice: Identity
) -> None:
    forged = Checkpoint(origin_of(alice.node_id), 25, bytes(32))
    with fails(
        "audit log has 20 entries but a signed checkpoint has 25: "
        "entries from index 20 on are missing"
    ):
        verify_log(log, roots(log), [forged])


def test_two_signed_roots_for_one_size_never_both_pass(log: list[bytes], alice: Identity) -> None:
    honest = checkpoint(log, 20, alice)
    other = Checkpoint(honest.origin, 20, bytes(32))
    with pytest.raises(AuditError, match="signed checkpoint of size 20"):
        verify_log(log, roots(log), [other, honest])
