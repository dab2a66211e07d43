"""The peer API as documented in docs/peer-api.openapi.{json,yaml}, checked against a running node.

The JSON file is the one the test reads (the project has no YAML parser as a dependency); the YAML
file is generated from it by :func:`to_yaml` and must match byte for byte. After editing the JSON,
regenerate with ``python -m tests.integration.test_openapi``.
"""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.integration.harness import PASSPHRASE, NodeProc, make_network, stop_all
from tests.integration.waiting import PATIENCE
from tests.tlsclient import anonymous, connect, read_answer, request_bytes

DOCS = Path(__file__).resolve().parents[2] / "docs"
JSON_DOC = DOCS / "peer-api.openapi.json"
YAML_DOC = DOCS / "peer-api.openapi.yaml"
BATCH = "application/vnd.borderlink.batch+msgpack"
HEALTH_AND_CARD = ("/v1/card", "/livez", "/readyz")  # the routes open to anonymous callers
# Small limits so every refusal is cheap to provoke. The probes sent as the trusted peer before
# its flood fit in its burst of 40, the anonymous ones before theirs in the burst of 20; the
# peer's fourth new message is over its inbox share.
LIMITS = {
    "BORDERLINK_LIMITS_MAX_BODY": "65536",
    "BORDERLINK_LIMITS_BODY_TIMEOUT": "0.5",
    "BORDERLINK_LIMITS_PEER_RATE": "1",
    "BORDERLINK_LIMITS_PEER_BURST": "40",
    "BORDERLINK_LIMITS_ANONYMOUS_RATE": "1",
    "BORDERLINK_LIMITS_ANONYMOUS_BURST": "40",
    "BORDERLINK_LIMITS_MAX_INBOX_PER_SENDER": "3",
}


def load_doc() -> dict[str, Any]:
    return json.loads(JSON_DOC.read_text())


# YAML from JSON ----------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z/][\w./+-]*")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS
        return value if plain else json.dumps(value)
    return json.dumps(value)  # numbers, true, false, null are spelled alike in JSON and YAML


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for JSON data, deterministic, so the two files can be compared as text."""
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{_scalar(key)}:\n{to_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{_scalar(key)}: {to_yaml(item).strip()}")
        return "\n".join(lines)
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            text = to_yaml(item, indent + 2)
            lines.append(f"{pad}- {text.lstrip()}")
        return "\n".join(lines)
    if isinstance(value, dict):
        return pad + "{}"
    if isinstance(value, list):
        return pad + "[]"
    return pad + _scalar(value)


def yaml_text(doc: dict[str, Any]) -> str:
    return (
        "# Generated from peer-api.openapi.json by tests/integration/test_openapi.py.\n"
        + to_yaml(doc)
        + "\n"
    )


# a JSON Schema subset, enough for this document ---------------------------------------------------


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


_TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}


def validate(
    doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$"
) -> list[str]:
    """Problems with ``value`` under ``schema`` (type, required, properties, enum, const, allOf)."""
    schema = resolve(doc, schema)
    problems: list[str] = []
    for sub in schema.get("allOf", []):
        problems += validate(doc, sub, value, where)
    kind = schema.get("type")
    if kind is not None and not isinstance(value, _TYPES[kind]):
        return [*problems, f"{where}: expected {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where}: {value!r} is not {schema['const']!r}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        problems += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            problems += [f"{where}: unexpected {k}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                problems += validate(doc, sub, value[k], f"{where}.{k}")
    return problems


def error_reasons(doc: dict[str, Any], response: dict[str, Any]) -> list[str]:
    """The reasons a declared error response allows: the narrowest enum on its ``error``."""
    schema = resolve(doc, response["content"]["application/json"]["schema"])
    found = resolve(doc, schema).get("properties", {}).get("error", {}).get("enum")
    for sub in schema.get("allOf", []):
        enum = resolve(doc, sub).get("properties", {}).get("error", {}).get("enum")
        if enum is not None and (found is None or len(enum) < len(found)):
            found = enum
    return list(found or [])


# the running node and what it answers ------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProc, Any, Any, Any]]:
    from keys.card import parse_card
    from keys.keystore import open_keystore, read_keystore_file
    from protocol.identity import Identity

    root = tmp_path_factory.mktemp("openapi")
    nodes = make_network(root, ["bar-pcu", "belgrade-accu"], start=False, extra_env=LIMITS)
    bar, peer = nodes["bar-pcu"], nodes["belgrade-accu"]
    bar.start()
    try:
        me = parse_card((root / "bar-pcu.card").read_text(), now=None).identity
        secret = open_keystore(read_keystore_file(peer.home / "keystore.json"), PASSPHRASE.encode())
        yield bar, me, Identity.from_secret_bytes(secret), peer.as_peer_of(bar)
    finally:
        stop_all(nodes)


class Answer(msgspec.Struct):
    status: int
    content_type: str
    body: bytes


def request(
    url: str, via: ssl.SSLContext, method: str = "GET", body: bytes | None = None
) -> Answer:
    """One request over TLS: ``via`` is the trusted peer's context or an anonymous one."""
    headers = {"Content-Type": BATCH} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=via)
    )
    try:
        with opener.open(req, timeout=PATIENCE) as r:
            return Answer(r.status, r.headers.get_content_type(), r.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers.get_content_type(), exc.read())


def raw_post(
    port: int, via: ssl.SSLContext, length: int, body: bytes, path: str = "/v1/envelopes"
) -> Answer:
    """A POST written by hand: to declare a length and then send less (or nothing). Reading
    blocks until the node answers, e.g. once its body timeout ran out."""
    head = request_bytes(
        "POST", path, headers={"Content-Type": BATCH, "Content-Length": str(length)}
    )
    with connect(port, via, timeout=PATIENCE) as s:
        s.sendall(head + body)
        got = read_answer(s)
    return Answer(got.status, got.headers.get("content-type", "").split(";")[0], got.body)


def not_utf8(port: int, path: str) -> Answer:
    """A GET with a header value that is not UTF-8, from no one: refused before any route."""
    with connect(port, anonymous(), timeout=PATIENCE) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + b"X-Unit: caf\xe9\r\n\r\n")
        got = read_answer(s)
    return Answer(got.status, got.headers.get("content-type", "").split(";")[0], got.body)


def probes(
    bar: NodeProc, me: Any, peer: Any, via: ssl.SSLContext
) -> list[tuple[str, str, Answer, str | None]]:
    """(path, method, answer, expected reason or None) for every answer the node can give:
    ``via`` is the trusted peer's TLS context; some probes come with no certificate at all."""
    from protocol.batch import encode_batch
    from protocol.envelope import seal
    from protocol.identity import Identity
    from protocol.schemas import encode_body, template

    now = int(time.time())
    nobody = anonymous()

    def env(
        ident: Any = peer,
        to: Any = me,
        t: int = now,
        ttl: int = 600,
        msg_id: bytes | None = None,
        kind: str = "seizure-alert",
    ) -> bytes:
        body = encode_body(template(kind))
        return seal(ident, [to], kind, body, now=t, ttl=ttl, msg_id=msg_id).encode()

    class Forger:  # claims the trusted peer's node id, signs with another key
        node_id = peer.node_id
        sign = Identity.generate().sign

    good = env()
    tampered = bytearray(good)
    tampered[-1] ^= 1  # last byte of the payload: the AEAD tag
    reused = bytes(16)
    post = bar.url + "/v1/envelopes"
    out: list[tuple[str, str, Answer, str | None]] = [
        ("/v1/card", "get", request(bar.url + "/v1/card", nobody), None),
        ("/v1/card", "get", request(bar.url + "/v1/card", via), None),
        ("/livez", "get", request(bar.url + "/livez", nobody), None),
        ("/readyz", "get", request(bar.url + "/readyz", nobody), None),
        *((path, "get", not_utf8(bar.port, path), "malformed") for path in HEALTH_AND_CARD),
        (
            "/v1/envelopes",
            "post",
            request(post, nobody, "POST", encode_batch([good])),
            "unauthenticated",
        ),
    ]
    cases: list[tuple[bytes, str | None]] = [
        (encode_batch([good]), None),
        (encode_batch([good]), None),  # again: a duplicate, still 200
        (encode_batch([good, b"junk"]), None),  # per-item outcomes in one 200
        (b"\xc1 not msgpack", "malformed"),
        (encode_batch([]), "malformed"),
        (b"\xdd\x00\x1e\x84\x80", "malformed"),  # an array header saying 2,000,000 items
        (encode_batch([env(to=Identity.generate().public)]), "not_recipient"),
        (encode_batch([env(ident=Identity.generate())]), "channel_mismatch"),
        (encode_batch([env(t=now - 1000, ttl=10)]), "expired"),
        (encode_batch([env(t=now + 3600)]), "clock_skew"),
        (encode_batch([bytes(tampered)]), "decryption_failed"),
        (encode_batch([env(ident=Forger())]), "bad_signature"),
        (encode_batch([env(msg_id=reused)]), None),
        (encode_batch([env(msg_id=reused)]), "replay"),
        (encode_batch([b"x" * 70_000]), "oversize"),
        (encode_batch([env()]), None),  # the third new message: the share is full
        (encode_batch([env()]), "quota_exceeded"),
        # feedback about a message this node never sent to the peer
        (encode_batch([env(kind="feedback")]), "foreign_reference"),
    ]
    for data, reason in cases:
        out.append(("/v1/envelopes", "post", request(post, via, "POST", data), reason))
    out.append(("/v1/envelopes", "post", raw_post(bar.port, via, 10_000_000, b""), "oversize"))
    out.append(("/v1/envelopes", "post", raw_post(bar.port, via, 100, b"\x91"), "body_timeout"))
    out += audit_probes(bar, peer, via)
    out += key_probes(bar, peer)
    out += directory_probes(bar, via)
    flow = bar.url + "/v1/flow"  # PROTOCOL.md 14.3: bar is a unit, no coordinator
    out += [
        ("/v1/flow", "post", request(flow, nobody, "POST", b"\x94"), "unauthenticated"),
        ("/v1/flow", "post", request(flow, via, "POST", b"\x94"), "not_a_coordinator"),
        ("/v1/flow", "post", raw_post(bar.port, via, 10_000_000, b"", path="/v1/flow"), "oversize"),
        (
            "/v1/flow",
            "post",
            raw_post(bar.port, via, 100, b"\x94", path="/v1/flow"),
            "body_timeout",
        ),
    ]
    # The probes above left the peer's bucket a few tokens: the flood empties it, and the
    # audit routes share it. Anonymous callers have a bucket of their own, per address.
    flooded = refused(lambda: request(post, via, "POST", b"\xc1"))
    out.append(("/v1/envelopes", "post", flooded, "rate_limited"))
    audit = bar.url + "/v1/audit"
    out += [
        (
            "/v1/audit/checkpoint",
            "get",
            refused(lambda: request(audit + "/checkpoint", via)),
            "rate_limited",
        ),
        (
            "/v1/audit/consistency",
            "get",
            refused(lambda: request(audit + "/consistency?old=1&new=1", via)),
            "rate_limited",
        ),
        (
            "/v1/audit/cosignature",
            "post",
            refused(lambda: request(audit + "/cosignature", via, "POST", b"{}")),
            "rate_limited",
        ),
        (
            "/v1/card",
            "get",
            refused(lambda: request(bar.url + "/v1/card", nobody)),
            "rate_limited",
        ),
        (
            "/v1/keys",
            "post",
            refused(lambda: request(bar.url + "/v1/keys", nobody, "POST", b"x")),
            "rate_limited",
        ),
        (
            "/v1/directory",
            "get",
            refused(lambda: request(bar.url + "/v1/directory", via)),
            "rate_limited",
        ),
        (
            "/v1/flow",
            "post",
            refused(lambda: request(bar.url + "/v1/flow", via, "POST", b"\x94")),
            "rate_limited",
        ),
    ]
    out += revoked_probes(bar, peer, via)
    return out


def _peer_card(bar: NodeProc) -> Any:
    from keys.card import parse_card

    return parse_card((bar.home.parent / "belgrade-accu.card").read_text(), now=None)


def _card_like(card: Any, ident: Any, **over: Any) -> str:
    """A card of the peer's, as its node would issue it, with ``over`` changed."""
    from keys.card import make_card

    b = card.body
    args: dict[str, Any] = {
        "name": b.name,
        "unit_type": b.unit_type,
        "country": b.country,
        "location": b.location,
        "endpoints": list(b.endpoints),
        "valid_from": b.valid_from + 10,
        "valid_until": b.valid_until + 86400,
        "tls_cert": b.tls_cert,
        "seq": 1,
    }
    args.update(over)
    return str(make_card(ident, **args).armored())


def key_probes(bar: NodeProc, peer: Any) -> list[tuple[str, str, Answer, str | None]]:
    """POST /v1/keys (PROTOCOL.md 13.5) from no one: a renewal applied and answered again, and
    each refusal of 13.6."""
    import msgspec as ms
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from keys.statements import RevocationBody
    from keys.tls import make_certificate
    from protocol.armor import armor
    from protocol.identity import Identity
    from protocol.labels import REVOCATION_LABEL

    url = bar.url + "/v1/keys"
    nobody = anonymous()
    card = _peer_card(bar)
    now = int(time.time())

    def post(text: str | bytes) -> Answer:
        return request(url, nobody, "POST", text.encode() if isinstance(text, str) else text)

    renewal = _card_like(card, peer)
    lines = _card_like(
        card, peer, seq=2, valid_until=card.body.valid_until + 2 * 86400
    ).splitlines()
    lines[-2] = "=" + ("A" if lines[-2][1] != "A" else "B") + lines[-2][2:]  # the signature
    other_enc = Identity(peer._sign, X25519PrivateKey.generate())
    stranger = Identity.generate()
    body = ms.json.encode(
        RevocationBody(
            node_id=peer.node_id, key=stranger.public.sign_key, reason="retired", issued_at=now
        )
    )
    foreign_key = armor("REVOCATION", [body, stranger.sign(REVOCATION_LABEL + body)])
    return [
        ("/v1/keys", "post", post(renewal), None),
        ("/v1/keys", "post", post(renewal), None),  # again: unchanged, still 200
        ("/v1/keys", "post", post(card.armored()), "sequence_older"),
        ("/v1/keys", "post", post(_card_like(card, peer, seq=3)), "sequence_skipped"),
        ("/v1/keys", "post", post(_card_like(card, peer, valid_until=now + 99)), "sequence_reused"),
        ("/v1/keys", "post", post(_card_like(card, other_enc, seq=2)), "not_a_rotation"),
        (
            "/v1/keys",
            "post",
            post(_card_like(card, peer, seq=2, valid_until=card.body.valid_until)),
            "not_later",
        ),
        (
            "/v1/keys",
            "post",
            post(_card_like(card, stranger, seq=0, tls_cert=make_certificate(stranger, now=now))),
            "unknown_node",
        ),
        ("/v1/keys", "post", post(foreign_key), "unknown_key"),
        ("/v1/keys", "post", post("\n".join(lines) + "\n"), "bad_signature"),
        (
            "/v1/keys",
            "post",
            post(_card_like(card, peer, seq=2, valid_from=now - 200, valid_until=now - 100)),
            "expired",
        ),
        ("/v1/keys", "post", post("not a statement"), "malformed"),
        ("/v1/keys", "post", post(b"x" * 20_000), "oversize"),
        (
            "/v1/keys",
            "post",
            raw_post(bar.port, nobody, 100, b"-", path="/v1/keys"),
            "body_timeout",
        ),
    ]


def directory_probes(
    bar: NodeProc, via: ssl.SSLContext
) -> list[tuple[str, str, Answer, str | None]]:
    url = bar.url + "/v1/directory"
    out = [
        ("/v1/directory", "get", request(url, via), "not_found"),
        ("/v1/directory", "get", request(url, anonymous()), "unauthenticated"),
        ("/v1/directory", "get", not_utf8(bar.port, "/v1/directory"), "malformed"),
    ]
    # What a coordinator's 'peers publish-directory' leaves in its home is what it serves.
    (bar.home / "directory.txt").write_text("-----BEGIN BORDERLINK DIRECTORY-----\n")
    out.append(("/v1/directory", "get", request(url, via), None))
    return out


def revoked_probes(
    bar: NodeProc, peer: Any, via: ssl.SSLContext
) -> list[tuple[str, str, Answer, str | None]]:
    """Last, since it ends the peer: its own revocation, then any statement of it is 410."""
    from keys.statements import make_revocation

    url = bar.url + "/v1/keys"
    rev = make_revocation(peer, reason="retired", issued_at=int(time.time())).armored()
    done = served(lambda: request(url, anonymous(), "POST", rev.encode()))
    after = served(
        lambda: request(url, anonymous(), "POST", _card_like(_peer_card(bar), peer, seq=2).encode())
    )
    return [("/v1/keys", "post", done, None), ("/v1/keys", "post", after, "revoked")]


def served(send: Callable[[], Answer], tries: int = 100) -> Answer:
    """The first answer that is not 429, from a bucket the floods emptied (it refills at the
    anonymous rate; bounded in count and time)."""
    for _ in range(tries):
        answer = send()
        if answer.status != 429:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"still 429 after {tries} requests")


def refused(send: Callable[[], Answer], tries: int = 200) -> Answer:
    """The first 429 answer of up to ``tries`` calls of ``send``, from an emptied bucket.

    The bucket refills at 1 token per second: a request that merely comes late (a loaded
    machine) may find a token and be served, so one call is no reliable refusal. Each call that
    is served takes the token again, and the next comes in well under a second."""
    for _ in range(tries):
        answer = send()
        if answer.status == 429:
            return answer
    raise AssertionError(f"no 429 in {tries} requests from an emptied bucket")


def audit_probes(
    bar: NodeProc, peer: Any, via: ssl.SSLContext
) -> list[tuple[str, str, Answer, str | None]]:
    """The witnessing routes (PROTOCOL.md 12.3), as the trusted witness and as nobody."""
    from protocol.audit import origin_of
    from protocol.checkpoint import cosign, parse_checkpoint

    base = bar.url + "/v1/audit"
    nobody = anonymous()
    pid = peer.node_id.hex()
    cp = request(base + "/checkpoint", via)
    text = cp.body.decode().split("\n\n", 1)[0] + "\n"
    size = parse_checkpoint(text).size
    line = cosign(text, origin_of(peer.node_id), peer.signing_key, int(time.time()))

    def cosig(witness: str, n: int, ln: str, ctx: ssl.SSLContext = via) -> Answer:
        data = json.dumps({"witness": witness, "size": n, "line": ln}).encode()
        req = urllib.request.Request(
            base + "/cosignature",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        try:
            with opener.open(req, timeout=PATIENCE) as r:
                return Answer(r.status, r.headers.get_content_type(), r.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers.get_content_type(), exc.read())

    other = new_identity().node_id.hex()
    return [
        ("/v1/audit/checkpoint", "get", cp, None),
        ("/v1/audit/checkpoint", "get", request(base + "/checkpoint", nobody), "unauthenticated"),
        (
            "/v1/audit/consistency",
            "get",
            request(f"{base}/consistency?old=1&new={size}", via),
            None,
        ),
        (
            "/v1/audit/consistency",
            "get",
            request(f"{base}/consistency?old=1&new={size}", nobody),
            "unauthenticated",
        ),
        (
            "/v1/audit/consistency",
            "get",
            request(f"{base}/consistency?old=x", via),
            "malformed",
        ),
        ("/v1/audit/cosignature", "post", cosig(pid, size, line), None),
        ("/v1/audit/cosignature", "post", cosig(pid, size, line, nobody), "unauthenticated"),
        ("/v1/audit/cosignature", "post", cosig(pid, size + 99, line), "malformed"),
        ("/v1/audit/cosignature", "post", cosig(other, size, line), "channel_mismatch"),
        ("/v1/audit/cosignature", "post", cosig(pid, size, "x" * 5000), "oversize"),
        (
            "/v1/audit/cosignature",
            "post",
            raw_post(bar.port, via, 100, b"{", path="/v1/audit/cosignature"),
            "body_timeout",
        ),
        (
            "/v1/audit/cosignature",
            "post",
            cosig(pid, size, line.replace("A", "B", 1)),
            "bad_signature",
        ),
    ]


def new_identity() -> Any:
    from protocol.identity import Identity

    return Identity.generate()


# the tests --------------------------------------------------------------------------------------


def test_yaml_is_generated_from_json() -> None:
    doc = load_doc()
    assert YAML_DOC.read_text() == yaml_text(doc), (
        "regenerate: python -m tests.integration.test_openapi"
    )
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(YAML_DOC.read_text()) == doc


def test_every_reason_is_declared_with_its_status() -> None:
    from node.http.responses import HTTP_STATUS

    doc = load_doc()
    declared = {
        r: int(code)
        for ops in doc["paths"].values()
        for op in ops.values()
        for code, resp in op["responses"].items()
        if code >= "400"
        for r in error_reasons(doc, resp)
    }
    assert declared == HTTP_STATUS
    assert set(doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"]) == set(
        HTTP_STATUS
    )


def test_every_route_of_the_app_is_documented() -> None:
    from types import SimpleNamespace
    from typing import cast

    from node.config import Config
    from node.http.peer_routes import PeerDeps, make_peer_app

    # Declaring the routes reads only the limits; no service is called until a request comes.
    app = make_peer_app(
        cast(PeerDeps, SimpleNamespace(limits=Config().limits, home_root=Path("/nonexistent")))
    )

    routes = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(path, method) for path, ops in load_doc()["paths"].items() for method in ops}
    assert routes == documented


def test_the_running_node_answers_as_documented(node: tuple[NodeProc, Any, Any, Any]) -> None:
    doc = load_doc()
    seen: set[tuple[str, str, str]] = set()
    for path, method, ans, reason in probes(*node):
        what = f"{method.upper()} {path} -> {ans.status} ({reason or 'ok'})"
        responses = doc["paths"][path][method]["responses"]
        assert str(ans.status) in responses, f"{what}: status not declared"
        declared = responses[str(ans.status)]
        assert ans.content_type in declared["content"], f"{what}: content type {ans.content_type}"
        media = declared["content"][ans.content_type]
        if ans.content_type == "application/json":
            data = json.loads(ans.body)
            assert validate(doc, media["schema"], data) == [], f"{what}: {data}"
            if reason is not None:
                assert data["error"] == reason, what
        elif ans.content_type == BATCH:
            from protocol.batch import BatchResponse

            msgspec.msgpack.decode(ans.body, type=BatchResponse)
        assert (ans.status >= 400) == (reason is not None), what
        seen.add((path, method, str(ans.status)))
    declared_all = {
        (p, m, code)
        for p, ops in doc["paths"].items()
        for m, op in ops.items()
        for code in op["responses"]
    }
    # Only the answers a healthy node never gives (shutting down) go unexercised, and those only
    # a coordinator gives to a flow report (tests/integration/test_flow_attacks.py has them).
    assert declared_all - seen == {
        ("/v1/envelopes", "post", "503"),
        ("/readyz", "get", "503"),
        ("/v1/flow", "post", "200"),
        ("/v1/flow", "post", "400"),
        ("/v1/flow", "post", "422"),
    }


if __name__ == "__main__":
    YAML_DOC.write_text(yaml_text(load_doc()))
    print(f"wrote {YAML_DOC}")
