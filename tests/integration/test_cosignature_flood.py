"""attack9 F4 (PROTOCOL.md 12.3): a trusted witness minted a new cosignature line per request
(any past timestamp was accepted, even 1970), each replacing the last and each audited: 301 POSTs
gave 301 ``checkpoint.cosigned`` entries. Pinned against a real node process, with the witness's
real mutual TLS channel (its key, its certificate, the node's pin).

The timestamps are taken from the node's own clock (the Date header of its answer), never the
test's: the node dates the checkpoint and decides what is in the future.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from protocol.audit import origin_of
from protocol.checkpoint import CosignatureVerifier, checkpoint_size, cosign, verify_cosignature
from protocol.signednote import parse_note
from tests.integration.harness import PASSPHRASE, NodeProc, make_network, stop_all
from tests.tlsclient import Answer, connect, home_identity, read_answer, request_bytes

COSIGNATURE = "/v1/audit/cosignature"
QUIET_WITNESS = {"BORDERLINK_AUDIT_WITNESS_INTERVAL": "3600"}


def cosigned_by(log: NodeProc, witness: bytes) -> list[str]:
    """The outcomes ("size N") of the log's checkpoint.cosigned entries for ``witness``."""
    items = log.json("audit", "log", "--kind", "checkpoint.cosigned")["items"]
    return [e["outcome"] for e in items if e["peer_id"] == witness.hex()]


def witness_lines(note: str, witness: bytes) -> list[str]:
    prefix = f"— {origin_of(witness)} "
    return [ln for ln in note.splitlines() if ln.startswith(prefix)]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    """Two nodes whose own witnesses wait an hour: the test is the only witness posting."""
    nodes = make_network(tmp_path, ["bar-pcu", "belgrade-accu"], extra_env=QUIET_WITNESS)
    yield nodes
    stop_all(nodes)


def test_12_3_a_witness_posting_300_cosignatures_adds_one_audit_entry(
    pair: dict[str, NodeProc],
) -> None:
    bar, belgrade = pair["bar-pcu"], pair["belgrade-accu"]
    me = home_identity(belgrade.home, PASSPHRASE)
    codes: Counter[int] = Counter()
    with connect(bar.port, belgrade.as_peer_of(bar)) as sock:

        def call(method: str, path: str, body: bytes = b"") -> Answer:
            headers = {"Content-Type": "application/json"} if body else {}
            sock.sendall(request_bytes(method, path, body, headers))
            return read_answer(sock)

        got = call("GET", "/v1/audit/checkpoint")
        assert got.status == 200
        note = got.body.decode()
        text, size = parse_note(note).text, checkpoint_size(note)
        now = int(parsedate_to_datetime(got.headers["date"]).timestamp())  # bar's clock

        def post(at: int) -> Answer:
            line = cosign(text, origin_of(me.node_id), me.signing_key, at)
            body = {"witness": me.node_id.hex(), "size": size, "line": line}
            return call("POST", COSIGNATURE, json.dumps(body).encode())

        # dated well before bar signed the checkpoint (1970), or far ahead of bar's clock
        for at in (0, now + 86400):
            refused = post(at)
            assert refused.status == 422, refused
            assert json.loads(refused.body)["error"] == "bad_signature"
        for at in range(now - 150, now + 150):  # 300 distinct lines, every one well dated
            codes[post(at).status] += 1
        served = call("GET", "/v1/audit/checkpoint").body.decode()
    assert codes == {200: 300}
    assert cosigned_by(bar, me.node_id) == [f"size {size}"]
    [line] = witness_lines(served, me.node_id)  # the first well dated one stands
    verifier = CosignatureVerifier(origin_of(me.node_id), me.public.sign_key)
    assert verify_cosignature(note + line + "\n", verifier) == now - 150
