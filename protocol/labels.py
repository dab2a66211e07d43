"""Domain-separation labels and protocol constants (PROTOCOL.md section 1).

Every signature, KDF context and hash input starts with one of these labels, so a signature made for
one purpose can never be replayed as another (a card signature is never a message signature).
"""

from __future__ import annotations

PROTOCOL_VERSION = 1

NODE_ID_LABEL = b"borderlink/1 node-id\n"
FINGERPRINT_LABEL = b"borderlink/1 fingerprint\n"
CARD_SIGNATURE_LABEL = b"borderlink/1 card\n"
TLS_KEY_LABEL = b"borderlink/1 tls key"  # HKDF info deriving the TLS key from the signing seed
MESSAGE_SIGNATURE_LABEL = b"borderlink/1 message\n"
HPKE_INFO_LABEL = b"borderlink/1 hpke slot\n"
ENVELOPE_HASH_LABEL = b"borderlink/1 envelope\n"
RECEIPT_SIGNATURE_LABEL = b"borderlink/1 receipt\n"
# Key lifecycle (PROTOCOL.md 13): a rotation link is signed by the key it replaces, a revocation by
# the key it revokes, a key-statement receipt by the peer that applied it, a directory by its
# coordinator.
ROTATION_LABEL = b"borderlink/1 key rotation\n"
REVOCATION_LABEL = b"borderlink/1 key revocation\n"
KEY_RECEIPT_LABEL = b"borderlink/1 key statement receipt\n"
DIRECTORY_LABEL = b"borderlink/1 directory\n"
MAX_ROTATIONS = 32  # links a card may carry; a node rotating monthly has years of room
MAX_OVERLAP_SECONDS = 90 * 24 * 3600

# Limits enforced before any decoding or cryptography (PROTOCOL.md section 6).
MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_RECIPIENTS = 64
MAX_PADDED_PLAINTEXT = 512 * 1024
MIN_PADDED_PLAINTEXT = 1024
MAX_CARD_BYTES = 16 * 1024
MAX_TTL_SECONDS = 30 * 24 * 3600
DEFAULT_CLOCK_SKEW_SECONDS = 300
# Flow reports (PROTOCOL.md 14): a unit's metadata about its message flow, signed and sealed to one
# coordinator; the signature label and the HPKE info label keep them from passing for anything else.
FLOW_REPORT_LABEL = b"borderlink/1 flow report\n"
FLOW_HPKE_INFO_LABEL = b"borderlink/1 flow report hpke\n"
MAX_FLOW_REPORT_BYTES = 1024 * 1024
MAX_FLOW_EVENTS = 2000  # events in one report; a unit with more sends several
