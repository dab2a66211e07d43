"""The peer API's OpenAPI document, fuzzed by schemathesis against a live node over mutual TLS.

docs/peer-api.openapi.json is the contract other implementations are written against, so a node
must answer every request the document allows, and many it does not, as the document says: a
documented status, the documented content type, a body matching the documented schema, and never
a 5xx that is not documented. schemathesis generates the requests from the document (valid and
invalid ones, for every operation) and checks each answer; the node is a real ``borderlink serve``
on 127.0.0.1, called as a trusted peer whose certificate it pins, and pinning the node's own.

The run is bounded and deterministic: a fixed number of examples per operation, derandomized, no
example database and no shrinking (a failure prints the request, replayable with curl). An
anonymous run checks that everything but the card and the health checks answers 401.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from requests.adapters import HTTPAdapter
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from node.peer_client import FLOW_CONTENT_TYPE
from protocol.batch import BATCH_CONTENT_TYPE
from protocol.checkpoint import checkpoint_size
from tests.integration.harness import NodeProc, make_network, stop_all

DOC = Path(__file__).resolve().parents[2] / "docs" / "peer-api.openapi.json"
SCHEMA = schemathesis.openapi.from_path(DOC)
PUBLIC = ["/v1/card", "/livez", "/readyz", "/v1/keys"]  # what an anonymous caller may reach
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# A fixed budget: about 25 generated requests per operation and mode, the same ones every run.
BOUNDED = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: its cost is not bounded by us
    suppress_health_check=list(HealthCheck),
)
# Budgets high enough that no fuzzed request is refused for rate: 429 is documented, but an
# answer of 429 would test nothing else.
ROOMY = {
    "BORDERLINK_LIMITS_PEER_RATE": "100000",
    "BORDERLINK_LIMITS_PEER_BURST": "100000",
    "BORDERLINK_LIMITS_ANONYMOUS_RATE": "100000",
    "BORDERLINK_LIMITS_ANONYMOUS_BURST": "100000",
}


@schemathesis.serializer(BATCH_CONTENT_TYPE, FLOW_CONTENT_TYPE)
def _batch_bytes(_ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """A generated batch body goes on the wire as it is: mostly not MessagePack, so refused."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


class PinnedTLS(HTTPAdapter):
    """requests over one ``ssl.SSLContext``, which pins the server's certificate (and presents a
    peer's, if it has one). The context is the whole verification: no CA bundle is loaded into
    it, and no hostname is checked, because the card's certificate names a node id, not an
    address (node/tls.py does the same)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        assert context.verify_mode == ssl.CERT_REQUIRED
        self.context = context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(ssl_context=self.context, assert_hostname=False)
        super().init_poolmanager(*args, **kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host, pool = super().build_connection_pool_key_attributes(request, True, None)
        pool.update(cert_reqs="CERT_REQUIRED")  # never CERT_NONE, whatever a caller passes
        pool.pop("ca_certs", None)
        pool.pop("ca_cert_dir", None)
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = conn.ca_cert_dir = None


def pinned_session(context: ssl.SSLContext) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: 127.0.0.1 only
    session.mount("https://", PinnedTLS(context))
    return session


def pin_only(server_cert: bytes) -> ssl.SSLContext:
    """An anonymous caller that still pins the server: no client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=server_cert)
    return ctx


@dataclass(frozen=True)
class Live:
    server: NodeProc
    other: NodeProc  # the trusted peer
    witness: str  # its node id, hex
    size: int  # of the checkpoint the server signed
    peer: requests.Session  # the trusted peer's channel
    anonymous: requests.Session  # no client certificate
    contexts: tuple[ssl.SSLContext, ...]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    nodes = make_network(tmp_path_factory.mktemp("schemathesis"), ["bar-pcu", "belgrade-accu"])
    try:
        server, peer = nodes["bar-pcu"], nodes["belgrade-accu"]
        server.stop()
        server.extra_env.update(ROOMY)
        server.start()
        peer_ctx, anon_ctx = peer.as_peer_of(server), pin_only(server.cert)
        # A signed checkpoint of a few entries, so that some consistency requests are valid.
        with urllib.request.urlopen(server.url + "/v1/audit/checkpoint", context=peer_ctx) as r:
            size = checkpoint_size(r.read().decode())
        witness = peer.json("keys", "show")["node_id"]
        with pinned_session(peer_ctx) as p, pinned_session(anon_ctx) as a:
            yield Live(server, peer, witness, size, p, a, (peer_ctx, anon_ctx))
    finally:
        stop_all(nodes)


@pytest.fixture(scope="module", autouse=True)
def _contexts_stay_pinned(live: Live) -> Iterator[None]:
    """After the whole run, each context still trusts the one pinned certificate only."""
    yield
    for ctx in live.contexts:
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.cert_store_stats()["x509"] == 1  # the pin; no CA bundle was loaded


def as_the_caller(case: schemathesis.Case, live: Live) -> None:
    """A generated cosignature names a random witness and size, refused at once (channel_mismatch,
    no checkpoint of that size). Half of them (by the generated id's first digit, so the same
    ones every run) are made the calling peer's, and among those a size of 2 to 65535 (not the
    boundaries schemathesis tries, 0, 1, 2^63 - 1, 2^63) becomes the signed checkpoint's: so the
    generated lines reach the parsing and checking of a cosignature line."""
    body = case.body
    if case.path != "/v1/audit/cosignature" or not isinstance(body, dict):
        return
    witness = body.get("witness")
    if isinstance(witness, str) and witness[:1] in "01234567":
        body["witness"] = live.witness
        size = body.get("size")
        if type(size) is int and 1 < size < 2**16:
            body["size"] = live.size


@SCHEMA.parametrize()
@BOUNDED
def test_peer_api_as_documented(case: schemathesis.Case, live: Live) -> None:
    as_the_caller(case, live)
    case.call_and_validate(base_url=live.server.url, session=live.peer, checks=CHECKS, timeout=10)


@SCHEMA.exclude(path=PUBLIC).parametrize()
@settings(BOUNDED, max_examples=5)
def test_anonymous_callers_get_401(case: schemathesis.Case, live: Live) -> None:
    response = case.call(base_url=live.server.url, session=live.anonymous, timeout=10)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthenticated"


def test_the_sessions_pin_the_server(live: Live) -> None:
    """The adapter verifies: a session pinning another certificate cannot talk to the node."""
    with (
        pinned_session(pin_only(live.other.cert)) as s,
        pytest.raises(requests.exceptions.SSLError),
    ):
        s.get(live.server.url + "/livez", timeout=10)


# What schemathesis found, each pinned down -----------------------------------------------------


def post_cosignature(live: Live, body: object) -> requests.Response:
    return live.peer.post(
        live.server.url + "/v1/audit/cosignature",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


@pytest.mark.parametrize("size", [2**63, 2**64, -(2**63) - 1, 0, -1, 1.5, 1.0, 1e300, "1"])
def test_a_cosignature_for_a_size_no_tree_has_is_malformed(live: Live, size: object) -> None:
    """2^63 and beyond (found by schemathesis at the documented maximum + 1) reached SQLite,
    whose integers stop at 2^63 - 1, and came back 500; a float is no size either."""
    answer = post_cosignature(live, {"witness": live.witness, "size": size, "line": "x"})
    assert (answer.status_code, answer.json()["error"]) == (400, "malformed"), answer.text


def test_a_cosignature_for_the_signed_size_reaches_the_line_check(live: Live) -> None:
    answer = post_cosignature(live, {"witness": live.witness, "size": live.size, "line": "x"})
    assert (answer.status_code, answer.json()["error"]) == (400, "malformed")
    assert "no checkpoint" not in answer.json()["message"]


@pytest.mark.parametrize("spelling", ["upper", "short", "newline", "empty"])
def test_a_witness_not_spelled_as_documented_is_malformed(live: Live, spelling: str) -> None:
    """The document says 64 lowercase hex digits; an upper-case id was taken as the peer's, an
    empty one answered channel_mismatch."""
    witness = {
        "upper": live.witness.upper(),
        "short": live.witness[:-2],
        "newline": live.witness + "\n",
        "empty": "",
    }[spelling]
    answer = post_cosignature(live, {"witness": witness, "size": live.size, "line": "x"})
    assert (answer.status_code, answer.json()["error"]) == (400, "malformed"), answer.text


def consistency(live: Live, query: str) -> requests.Response:
    return live.peer.get(live.server.url + "/v1/audit/consistency?" + query, timeout=10)


@pytest.mark.parametrize(
    "query",
    [
        "old=%2B1&new=1",  # +1
        "old=%201&new=1",  # a space
        "old=1_0&new=10",  # int() reads 10
        "old=01&new=2",  # a checkpoint spells no leading zero
        "old=%D9%A3&new=%D9%A3",  # an Arabic-Indic 3: int() reads 3
        "old=1&old=2&new=2",  # which one?
        "old=1&new=" + "1" * 20,
        "old=1",
        "old=1&new=",
    ],
)
def test_a_consistency_size_must_be_decimal_digits_given_once(live: Live, query: str) -> None:
    answer = consistency(live, query)
    assert (answer.status_code, answer.json()["error"]) == (400, "malformed"), answer.text


def test_any_size_up_to_the_signed_one_gets_its_proof(live: Live) -> None:
    """The old mismatch (old=1&new=2 refused while documented): every 0 < old <= new <= the
    latest signed size is answered 200 with a ConsistencyProof; one beyond it 400."""
    assert live.size >= 2
    for old, new in [(1, 2), (1, live.size), (live.size, live.size), (2, live.size)]:
        answer = consistency(live, f"old={old}&new={new}")
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"].startswith("application/json")
        got = answer.json()
        assert set(got) == {"old", "new", "proof"} and (got["old"], got["new"]) == (old, new)
        assert all(isinstance(h, str) for h in got["proof"])
        assert (got["proof"] == []) == (old == new)
    answer = consistency(live, f"old=1&new={live.size + 1000}")
    assert (answer.status_code, answer.json()["error"]) == (400, "malformed")
