"""What an attacker builds by hand: envelopes with any signer, claimed sender, recipient list and
key slots. Shared by the pure attack tests and the same attacks over HTTP."""

from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from protocol.envelope import CONTENT_NONCE, SUITE, Envelope, Slot, header_bytes, hpke_info
from protocol.identity import Identity, PublicIdentity
from protocol.labels import MESSAGE_SIGNATURE_LABEL
from protocol.padding import pad

DAY = 86400


def craft(
    signer: Identity,
    claimed_sender: bytes,
    slots_for: list[PublicIdentity],
    signed_recipients: list[bytes],
    *,
    body: bytes,
    signature: bytes | None = None,
    msg_id: bytes | None = None,
    created: int | None = None,
    expires: int | None = None,
) -> bytes:
    """Build an envelope by hand, as an attacker holding ``signer``'s key would."""
    now = int(time.time())
    env = Envelope(
        v=1,
        id=msg_id or os.urandom(16),
        type="seizure-alert",
        sender=claimed_sender,
        recipients=sorted(signed_recipients),
        created=created if created is not None else now,
        expires=expires if expires is not None else now + DAY,
        slots=[],
        payload=b"",
    )
    header = header_bytes(env)
    sig = signature or signer.sign(MESSAGE_SIGNATURE_LABEL + header + body)
    key = ChaCha20Poly1305.generate_key()
    env.payload = ChaCha20Poly1305(key).encrypt(CONTENT_NONCE, pad(sig + body), header)
    env.slots = [
        Slot(
            r.node_id,
            SUITE.encrypt(key, r.encryption_key(), hpke_info(claimed_sender, r.node_id, env.id)),
        )
        for r in slots_for
    ]
    return env.encode()
