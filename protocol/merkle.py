"""RFC 9162 (formerly RFC 6962) Merkle tree math for the audit log; see AUDIT-FORMATS.md section 1.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, with stricter input checks
in front of it: every hash is 32 bytes, proofs have exactly the expected length, and the trivial
cases (equal sizes, empty first tree) are settled before the RFC loop, which assumes 0 < m < n.

Two ways to hash a growing log, because they answer different questions:

* ``MerkleAccumulator`` keeps only the right-edge peaks (one per set bit of the size): a signer or
  witness can follow the root in O(log n) memory without holding the leaves.
* ``MerkleTree`` keeps every complete interior node (about 2n hashes), so a proof server answers any
  inclusion or consistency proof in O(log^2 n) lookups instead of rehashing O(n) leaves.

The module-level ``inclusion_proof`` / ``consistency_proof`` take a plain list and rehash what they
need (about ``size`` hashes); they are for one-off proofs and tests.

Errors (all ``AuditError``, see protocol/errors.py):

    AuditError
    ├── InvalidProof        a proof, hash or root does not verify (or has the wrong shape)
    └── BadProofRequest     asked for a proof the tree cannot give (index or size out of range)
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Sequence
from hashlib import sha256

from protocol.errors import AuditError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"  # RFC 9162 2.1.1: domain separation between leaves and interior nodes
NODE_PREFIX = b"\x01"
EMPTY_ROOT = sha256(b"").digest()


class InvalidProof(AuditError):
    """A Merkle proof or hash failed verification."""


class BadProofRequest(AuditError):
    """A proof was requested for an index or size the tree does not have."""


def leaf_hash(entry: bytes) -> bytes:
    return sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(NODE_PREFIX + left + right).digest()


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProof(f"{what} is {len(value)} bytes, want {HASH_SIZE}")


def _check_leaves(hashes: Sequence[bytes]) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise BadProofRequest(f"every leaf hash must be {HASH_SIZE} bytes")


def _mth(hashes: Sequence[bytes]) -> bytes:
    """Level by level, carrying an odd last node up unchanged: the same tree as RFC 9162's split
    at the largest power of two, without recursion and in about len(hashes) hash calls."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        nxt = [
            sha256(NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    _check_leaves(hashes)
    return _mth(hashes)


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


# Subtree hash of the leaves [start, end); PATH and SUBPROOF only ask for ranges whose start is
# aligned to a power of two at least as large as the range, which MerkleTree relies on.
SubtreeHash = Callable[[int, int], bytes]


def _path(index: int, start: int, end: int, mth: SubtreeHash) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]), bottom-up, as a loop."""
    proof: list[bytes] = []
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            proof.append(mth(mid, end))
            end = mid
        else:
            proof.append(mth(start, mid))
            start = mid
    proof.reverse()
    return proof


def _subproof(size1: int, end: int, mth: SubtreeHash) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], true), as a loop over the descent from the root."""
    proof: list[bytes] = []
    start, m, complete = 0, size1, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(mth(start, end))
            break
        k = _split(n)
        if m <= k:
            proof.append(mth(start + k, end))
            end = start + k
        else:
            proof.append(mth(start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


def _check_inclusion_request(index: int, size: int, available: int) -> None:
    if not 0 <= index < size:
        raise BadProofRequest(f"leaf index {index} is not in a tree of size {size}")
    if size > available:
        raise BadProofRequest(f"tree size {size} is beyond the {available} leaves held")


def _check_consistency_request(size1: int, size2: int, available: int) -> None:
    if not 0 < size1 <= size2:
        raise BadProofRequest(f"no consistency proof from size {size1} to size {size2}")
    if size2 > available:
        raise BadProofRequest(f"tree size {size2} is beyond the {available} leaves held")


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    _check_inclusion_request(index, size, len(leaf_hashes))
    leaves = leaf_hashes[:size]
    _check_leaves(leaves)
    return _path(index, 0, size, lambda a, b: _mth(leaves[a:b]))


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """Empty for size1 == size2; size1 == 0 is refused, as RFC 9162 defines proofs for 0 < m."""
    _check_consistency_request(size1, size2, len(leaf_hashes))
    leaves = leaf_hashes[:size2]
    _check_leaves(leaves)
    return _subproof(size1, size2, lambda a, b: _mth(leaves[a:b]))


def _inclusion_length(index: int, size: int) -> int:
    """Length of PATH(index, D[size]): levels below where index and size-1 diverge, plus one
    sibling for each left turn above it (transparency-dev's inner + border)."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise InvalidProof unless ``proof`` puts leaf ``index`` in tree ``size`` with ``root``."""
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root hash")
    for p in proof:
        _check_hash(p, "proof hash")
    if not 0 <= index < size:  # RFC 9162 2.1.3.2 step 1
        raise InvalidProof(f"leaf index {index} is not in a tree of size {size}")
    want = _inclusion_length(index, size)
    if len(proof) != want:
        raise InvalidProof(f"inclusion proof has {len(proof)} hashes, want {want}")
    fn, sn, r = index, size - 1, leaf_hash  # steps 2, 3
    for p in proof:  # step 4
        if sn == 0:
            raise InvalidProof("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or not _same(r, root):  # step 5
        raise InvalidProof("inclusion proof does not lead to the root hash")


def _consistency_length(size1: int, size2: int) -> int:
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros: the largest complete left subtree
    seed = 0 if size1 == 1 << shift else 1
    return seed + _inclusion_length(size1 - 1, size2) - shift


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise InvalidProof unless tree ``size2``/``root2`` extends tree ``size1``/``root1``.

    Settled before the RFC 9162 2.1.4.2 loop (which assumes 0 < size1 < size2): equal sizes need an
    empty proof and equal roots; the empty tree (root SHA-256("")) is a prefix of every tree and
    needs an empty proof.
    """
    _check_hash(root1, "first root hash")
    _check_hash(root2, "second root hash")
    for p in proof:
        _check_hash(p, "proof hash")
    if size1 < 0 or size2 < size1:
        raise InvalidProof(f"tree size {size2} is smaller than earlier size {size1}")
    if size1 == size2 or size1 == 0:
        if proof:
            raise InvalidProof(f"consistency proof from size {size1} to {size2} must be empty")
        if size1 == 0 and not _same(root1, EMPTY_ROOT):
            raise InvalidProof("root hash of the empty tree is not SHA-256 of the empty string")
        if size1 == size2 and not _same(root1, root2):
            raise InvalidProof(f"two different root hashes for tree size {size1}")
        return
    if not proof:  # step 1
        raise InvalidProof("consistency proof is empty")
    want = _consistency_length(size1, size2)
    if len(proof) != want:
        raise InvalidProof(f"consistency proof has {len(proof)} hashes, want {want}")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # step 2
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise InvalidProof("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or not _same(fr, root1) or not _same(sr, root2):  # step 7
        raise InvalidProof(f"consistency proof from size {size1} to {size2} does not verify")


class MerkleAccumulator:
    """The right edge of a growing tree: one complete-subtree hash ("peak") per set bit of the size,
    largest first. Appending merges equal peaks like a binary carry."""

    __slots__ = ("_peaks", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._peaks: list[bytes] = []

    @classmethod
    def from_leaf_hashes(cls, hashes: Iterable[bytes]) -> MerkleAccumulator:
        acc = cls()
        for h in hashes:
            acc.append(h)
        return acc

    @classmethod
    def restore(cls, size: int, peaks: Sequence[bytes]) -> MerkleAccumulator:
        """Rebuild from a stored (size, peaks) pair, e.g. the node's last persisted state."""
        if size < 0 or len(peaks) != size.bit_count():
            raise BadProofRequest(f"tree size {size} needs {max(size, 0).bit_count()} peaks")
        _check_leaves(peaks)
        acc = cls()
        acc._size, acc._peaks = size, list(peaks)
        return acc

    @property
    def size(self) -> int:
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        return tuple(self._peaks)

    def append(self, leaf_hash: bytes) -> None:
        if len(leaf_hash) != HASH_SIZE:
            raise BadProofRequest(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
        h, n = leaf_hash, self._size
        while n & 1:  # each trailing one bit is a peak of the same height: merge it
            h = node_hash(self._peaks.pop(), h)
            n >>= 1
        self._peaks.append(h)
        self._size += 1

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        h = self._peaks[-1]
        for peak in reversed(self._peaks[:-1]):
            h = node_hash(peak, h)
        return h


class MerkleTree:
    """Every complete subtree hash of the log, so proofs over any earlier size are lookups.

    ``levels[k][i]`` is the hash of leaves [i * 2^k, (i + 1) * 2^k). Memory is about two hashes per
    leaf; appending is amortised O(1).
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        leaves = list(leaf_hashes)
        _check_leaves(leaves)
        self._levels: list[list[bytes]] = [leaves]
        level = leaves
        while len(level) > 1:
            level = [
                sha256(NODE_PREFIX + level[i] + level[i + 1]).digest()
                for i in range(0, len(level) - 1, 2)
            ]
            self._levels.append(level)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def leaf_hash(self, index: int) -> bytes:
        return self._levels[0][index]

    def append(self, leaf_hash: bytes) -> None:
        if len(leaf_hash) != HASH_SIZE:
            raise BadProofRequest(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
        h, k = leaf_hash, 0
        while True:
            if k == len(self._levels):
                self._levels.append([])
            level = self._levels[k]
            level.append(h)
            if not len(level) & 1:
                h, k = node_hash(level[-2], level[-1]), k + 1
            else:
                break

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end) for an aligned range: its complete chunks, largest first,
        folded from the right (RFC 9162's recursive split, unrolled)."""
        chunks: list[bytes] = []
        while start < end:
            k = (end - start).bit_length() - 1
            while start & ((1 << k) - 1):
                k -= 1
            chunks.append(self._levels[k][start >> k])
            start += 1 << k
        h = chunks[-1]
        for c in reversed(chunks[:-1]):
            h = node_hash(c, h)
        return h

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise BadProofRequest(f"tree size {size} is beyond the {self.size} leaves held")
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        _check_inclusion_request(index, size, self.size)
        return _path(index, 0, size, self._subtree)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        _check_consistency_request(size1, size2, self.size)
        return _subproof(size1, size2, self._subtree)
