"""Checkpoints, cosignatures and the witness's extension rule, including the attacks it must catch:
an edited entry, a truncated log, and a fork at the same size."""

from __future__ import annotations

import base64
from hashlib import sha256

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.checkpoint import (
    MAX_COSIGNATURE_LINE,
    BadConsistencyProof,
    Checkpoint,
    CosignatureVerifier,
    Fork,
    Inconsistent,
    MalformedCheckpoint,
    OriginMismatch,
    Rollback,
    check_extension,
    checkpoint_of,
    checkpoint_size,
    cosign,
    cosignature_line,
    format_checkpoint,
    log_signed,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_cosignature,
)
from protocol.errors import AuditError
from protocol.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, root_from_leaf_hashes
from protocol.signednote import (
    SIG_PREFIX,
    BadNoteSignature,
    MalformedNote,
    Note,
    UnverifiedNote,
    Verifier,
    format_note,
    key_id,
    parse_note,
    public_key_bytes,
    verify_note,
)

ORIGIN = "borderlink.example/audit/node-a"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
WITNESS = "witness.example/w1"
NOW = 1_700_000_000

# The body of the example in C2SP tlog-checkpoint.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def _tree(n: int, edit: int | None = None) -> MerkleTree:
    return MerkleTree(
        leaf_hash(b"edited" if i == edit else f"entry {i}".encode()) for i in range(n)
    )


def _cp(tree: MerkleTree, size: int | None = None) -> Checkpoint:
    size = tree.size if size is None else size
    return Checkpoint(ORIGIN, size, tree.root(size))


def _log() -> Verifier:
    return Verifier(ORIGIN, LOG_KEY.public_key())


def _witness() -> CosignatureVerifier:
    return CosignatureVerifier(WITNESS, WITNESS_KEY.public_key())


def test_spec_example_body_round_trips() -> None:
    cp = parse_checkpoint(SPEC_BODY)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert format_checkpoint(cp) == SPEC_BODY


def test_extension_lines_are_kept() -> None:
    body = SPEC_BODY + "ext one\next two\n"
    cp = parse_checkpoint(body)
    assert cp.extensions == ("ext one", "ext two")
    assert format_checkpoint(cp) == body


def test_empty_tree() -> None:
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    assert format_checkpoint(cp) == f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    assert parse_checkpoint(format_checkpoint(cp)) == cp


ROOT_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize(
    "body",
    [
        f"o\n1\n{ROOT_B64}",  # no final newline
        f"o\n1\n{ROOT_B64}\n\n",  # empty extension line
        "o\n1\n",
        f"\n1\n{ROOT_B64}\n",  # empty origin
        f" o\n1\n{ROOT_B64}\n",
        f"o o\n1\n{ROOT_B64}\n",
        f"o\t\n1\n{ROOT_B64}\n",
        f"o+p\n1\n{ROOT_B64}\n",
        f"o\n01\n{ROOT_B64}\n",  # leading zero
        f"o\n+1\n{ROOT_B64}\n",
        f"o\n-1\n{ROOT_B64}\n",
        f"o\n 1\n{ROOT_B64}\n",
        f"o\n1_0\n{ROOT_B64}\n",
        f"o\n\u0661\n{ROOT_B64}\n",  # ARABIC-INDIC DIGIT ONE: int() would take it
        f"o\n{2**63}\n{ROOT_B64}\n",
        f"o\n\n{ROOT_B64}\n",
        f"o\n1\n{ROOT_B64.rstrip('=')}\n",  # unpadded
        f"o\n1\n{base64.b64encode(b'x' * 31).decode()}\n",
        f"o\n1\n{base64.b64encode(b'x' * 33).decode()}\n",
        "o\n1\n" + base64.urlsafe_b64encode(bytes([255]) * 32).decode() + "\n",
        f"o\n0\n{ROOT_B64}\n",  # the empty tree has exactly one root
    ],
)
def test_malformed_checkpoints_are_rejected(body: str) -> None:
    with pytest.raises(MalformedCheckpoint):
        parse_checkpoint(body)


def test_signed_checkpoint_opens_with_the_log_key_only() -> None:
    cp = _cp(_tree(10))
    signed = sign_checkpoint(cp, ORIGIN, LOG_KEY)
    assert open_checkpoint(signed, [_log()]) == cp
    with pytest.raises(UnverifiedNote):
        open_checkpoint(signed, [Verifier(ORIGIN, WITNESS_KEY.public_key())])
    with pytest.raises(BadNoteSignature):
        open_checkpoint(signed.replace("\n10\n", "\n11\n"), [_log()])


def test_cosignature_round_trip_and_exact_message() -> None:
    cp = _cp(_tree(7))
    body = format_checkpoint(cp)
    signed = sign_checkpoint(cp, ORIGIN, LOG_KEY)
    line = cosign(body, WITNESS, WITNESS_KEY, NOW)
    cosigned = signed + line
    assert verify_cosignature(cosigned, _witness(), now=NOW) == NOW
    assert open_checkpoint(cosigned, [_log()]) == cp  # the log key still opens it

    sig = parse_note(cosigned).signatures[1]
    public = public_key_bytes(WITNESS_KEY.public_key())
    assert sig.key_id == sha256(WITNESS.encode() + b"\n\x04" + public).digest()[:4]
    assert sig.key_id != key_id(WITNESS, 0x01, public)
    assert sig.signature[:8] == NOW.to_bytes(8, "big")
    message = f"cosignature/v1\ntime {NOW}\n".encode() + body.encode()
    WITNESS_KEY.public_key().verify(sig.signature[8:], message)


def test_cosignature_is_found_by_verify_note_and_vkey() -> None:
    body = format_checkpoint(_cp(_tree(3)))
    cosigned = sign_checkpoint(parse_checkpoint(body), ORIGIN, LOG_KEY) + cosign(
        body, WITNESS, WITNESS_KEY, NOW
    )
    witness = CosignatureVerifier.from_vkey(_witness().vkey)
    assert base64.b64decode(witness.vkey.split("+", 2)[2])[0] == 0x04
    assert [s.name for s in verify_note(cosigned, [witness]).signatures] == [WITNESS]
    # A plain Ed25519 verifier for the same name and key has another key ID: not a match.
    with pytest.raises(UnverifiedNote):
        verify_note(cosigned, [Verifier(WITNESS, WITNESS_KEY.public_key())])


def test_tampered_cosignatures_are_rejected() -> None:
    body = format_checkpoint(_cp(_tree(7)))
    signed = sign_checkpoint(parse_checkpoint(body), ORIGIN, LOG_KEY)
    sig = parse_note(signed + cosign(body, WITNESS, WITNESS_KEY, NOW)).signatures[1]
    later = (NOW + 1).to_bytes(8, "big") + sig.signature[8:]
    cases = [
        format_note(Note(body, (type(sig)(sig.name, sig.key_id, later),))),  # moved timestamp
        format_note(Note(body.replace("\n7\n", "\n8\n"), (sig,))),  # other tree size
    ]
    for data in cases:
        with pytest.raises(BadNoteSignature):
            verify_cosignature(data, _witness())
    with pytest.raises(UnverifiedNote):
        verify_cosignature(signed, _witness())


def test_cosignature_from_the_future_is_refused_when_now_is_given() -> None:
    body = format_checkpoint(_cp(_tree(2)))
    cosigned = sign_checkpoint(parse_checkpoint(body), ORIGIN, LOG_KEY) + cosign(
        body, WITNESS, WITNESS_KEY, NOW + 3600
    )
    assert verify_cosignature(cosigned, _witness()) == NOW + 3600
    with pytest.raises(BadNoteSignature, match="future"):
        verify_cosignature(cosigned, _witness(), now=NOW)


def test_cosign_refuses_what_is_not_a_checkpoint_body() -> None:
    body = format_checkpoint(_cp(_tree(2)))
    with pytest.raises(MalformedCheckpoint):
        cosign(sign_checkpoint(parse_checkpoint(body), ORIGIN, LOG_KEY), WITNESS, WITNESS_KEY, NOW)
    with pytest.raises(MalformedCheckpoint):
        cosign("hello\n", WITNESS, WITNESS_KEY, NOW)


# The witness's rule.
def test_first_checkpoint_and_same_checkpoint_are_accepted() -> None:
    tree = _tree(9)
    check_extension(None, _cp(tree), [])
    check_extension(_cp(tree), _cp(tree), [])
    check_extension(Checkpoint(ORIGIN, 0, EMPTY_ROOT), _cp(tree), [])


@pytest.mark.parametrize(("old", "new"), [(1, 2), (3, 8), (7, 9), (8, 21), (20, 21)])
def test_growth_with_a_valid_proof_is_accepted(old: int, new: int) -> None:
    tree = _tree(new)
    check_extension(_cp(tree, old), _cp(tree), tree.consistency_proof(old, new))


def test_truncation_is_a_rollback() -> None:
    tree = _tree(10)
    with pytest.raises(Rollback):
        check_extension(_cp(tree), _cp(tree, 6), [])


def test_fork_at_the_same_size() -> None:
    honest, forked = _tree(10), _tree(10, edit=3)
    with pytest.raises(Fork):
        check_extension(_cp(honest), _cp(forked), [])


def test_edited_history_fails_the_consistency_proof() -> None:
    """The log rewrote entry 3 after signing size 6, then grew: no proof can bridge the two."""
    honest, edited = _tree(6), _tree(12, edit=3)
    with pytest.raises(BadConsistencyProof):
        check_extension(_cp(honest), _cp(edited), edited.consistency_proof(6, 12))
    with pytest.raises(BadConsistencyProof):
        check_extension(_cp(honest), _cp(edited), _tree(12).consistency_proof(6, 12))


def test_truncate_and_regrow_fails_the_consistency_proof() -> None:
    """Drop the last 4 entries of a size-10 log and append 6 others: size grows, history doesn't."""
    leaves = [leaf_hash(f"entry {i}".encode()) for i in range(10)]
    regrown = MerkleTree([*leaves[:6], *(leaf_hash(f"new {i}".encode()) for i in range(6))])
    old = Checkpoint(ORIGIN, 10, root_from_leaf_hashes(leaves))
    with pytest.raises(BadConsistencyProof):
        check_extension(old, _cp(regrown), regrown.consistency_proof(10, 12))


def test_missing_or_padded_proofs_are_refused() -> None:
    tree = _tree(13)
    proof = tree.consistency_proof(5, 13)
    for bad in ([], proof[:-1], [*proof, proof[0]]):
        with pytest.raises(BadConsistencyProof):
            check_extension(_cp(tree, 5), _cp(tree), bad)
    with pytest.raises(BadConsistencyProof):
        check_extension(_cp(tree), _cp(tree), [tree.root()])


def test_other_origin_is_refused() -> None:
    tree = _tree(4)
    with pytest.raises(OriginMismatch):
        check_extension(_cp(tree), Checkpoint("elsewhere.example", 4, tree.root()), [])
    assert issubclass(OriginMismatch, Inconsistent)


def test_worked_example_in_audit_formats_md() -> None:
    """The bytes printed in docs/AUDIT-FORMATS.md section 7 (Ed25519 is deterministic)."""
    leaves = [leaf_hash(f"entry {i}".encode()) for i in range(3)]
    cp = Checkpoint(ORIGIN, 3, root_from_leaf_hashes(leaves))
    assert cp.root_hash.hex() == "94fbd0dd836f50301692e6d0eade728ee19ec52bfff1606ed807c8575d5aaa19"
    assert (
        _log().vkey
        == "borderlink.example/audit/node-a+c5ec7b9d+AdBKsjJ0K7SrOhNovUYV5ObQIkq3GgFrr4UgozLJd4c3"
    )
    assert (
        _witness().vkey
        == "witness.example/w1+e0cd2864+BKCapfR6Z1mAL/lV+NwtKhSlyZ0jvpf4ZBJ/+Tg0VaTw"
    )
    cosigned = sign_checkpoint(cp, ORIGIN, LOG_KEY) + cosign(
        format_checkpoint(cp), WITNESS, WITNESS_KEY, NOW
    )
    assert cosigned == (
        "borderlink.example/audit/node-a\n3\nlPvQ3YNvUDAWkubQ6t5yjuGexSv/8WBu2AfIV11aqhk=\n\n"
        "\u2014 borderlink.example/audit/node-a xex7nd3W/7weDO0wSpcZU6b3Ha/EDz0RONppMcnplANdGeAtC"
        "y9wzWU3Z1MLXL4cdlV2yVFCy93S1lefZbgzzQn8ngY=\n"
        "\u2014 witness.example/w1 4M0oZAAAAABlU/EA+QeE7c3Ny60zaDD53cJsSh2XhiXVzxaOTfFibLs7dBveegPOC"
        "mWAFDYYJ4V7+2A9wZGjKj+XnEk6SiIeuY5oAA==\n"
    )


# Reading notes for the node: nothing outside protocol/ splits a signed note by hand.


def _cosigned(size: int) -> tuple[str, str, str]:
    """(checkpoint text, the log's signed note, the same note with a witness's line appended)."""
    body = format_checkpoint(_cp(_tree(size)))
    signed = sign_checkpoint(parse_checkpoint(body), ORIGIN, LOG_KEY)
    return body, signed, signed + cosign(body, WITNESS, WITNESS_KEY, NOW)


def test_checkpoint_size_and_checkpoint_of_read_a_signed_note() -> None:
    body, signed, cosigned = _cosigned(9)
    assert checkpoint_size(signed) == checkpoint_size(cosigned) == 9
    assert checkpoint_of(cosigned) == parse_checkpoint(body)
    with pytest.raises(MalformedNote):
        checkpoint_size(body)  # checkpoint text without a signature is not a signed note


def test_log_signed_keeps_the_text_and_only_the_logs_own_line() -> None:
    body, signed, cosigned = _cosigned(4)
    assert log_signed(cosigned, _log()) == (body, signed)
    assert log_signed(signed.encode(), _log()) == (body, signed)


def test_log_signed_skips_a_line_under_the_logs_name_with_another_key() -> None:
    """verify_note ignores such a line; keeping it as the log's would store a note that no
    longer verifies (and evidence that proves nothing)."""
    body, signed, _ = _cosigned(4)
    impostor = Ed25519PrivateKey.from_private_bytes(b"\x33" * 32)
    other = sign_checkpoint(parse_checkpoint(body), ORIGIN, impostor)
    both = body + "\n" + parse_note(other).signatures[0].line() + signed.split("\n\n", 1)[1]
    assert open_checkpoint(both, [_log()]) == parse_checkpoint(body)
    assert log_signed(both, _log()) == (body, signed)


def test_log_signed_refuses_a_note_without_the_logs_line() -> None:
    body = format_checkpoint(_cp(_tree(4)))
    only_witness = format_note(Note(body, parse_note(_cosigned(4)[2]).signatures[1:]))
    with pytest.raises(AuditError, match="no signature line of its log"):
        log_signed(only_witness, _log())


def test_cosignature_line_is_taken_in_its_canonical_spelling() -> None:
    _body, signed, cosigned = _cosigned(5)
    line = cosigned.removeprefix(signed)
    sig = cosignature_line(signed, line.rstrip("\n"))
    assert sig == parse_note(cosigned).signatures[1]
    assert sig.line() == line
    assert verify_cosignature(signed + sig.line(), _witness()) == NOW


def test_cosignature_line_cannot_smuggle_a_second_line() -> None:
    _body, signed, cosigned = _cosigned(5)
    line = cosigned.removeprefix(signed)
    forged = parse_note(signed).signatures[0].line()  # any line under the log's own name
    for smuggled in (line + forged, forged.rstrip("\n") + "\n" + line):
        with pytest.raises(AuditError, match="one line"):
            cosignature_line(signed, smuggled)


def test_cosignature_line_has_a_size_limit() -> None:
    _body, signed, _ = _cosigned(5)
    long = f"{SIG_PREFIX}{WITNESS} " + base64.b64encode(bytes(600)).decode() + "\n"
    assert len(long.encode()) > MAX_COSIGNATURE_LINE
    with pytest.raises(AuditError, match=f"at most {MAX_COSIGNATURE_LINE} bytes"):
        cosignature_line(signed, long)
    with pytest.raises(MalformedNote):
        cosignature_line(signed, "not a signature line")
