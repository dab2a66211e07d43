"""Node identities, fingerprints, contact cards, trust rules and the encrypted keystore.

Pure except for the keystore file (keys/keystore.py). See docs/PROTOCOL.md sections 2-4.
"""
