"""RFC 9162 (Certificate Transparency v2) Merkle tree hash over SHA-256, section 2.1.

    MTH({})    = SHA-256("")
    MTH({d0})  = SHA-256(0x00 || d0)
    MTH(D[n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two < n

The tree is computed level by level: hash the leaves, then pair neighbours, promoting an
unpaired last node unchanged to the next level. That gives exactly the RFC's tree head: the
RFC's left subtree D[0:k] is a complete binary tree of k = 2^j leaves, which level-wise pairing
builds identically (its nodes never pair across the k boundary because every level before the
j-th has an even count on the left), and the right part D[k:n] is handled by the same argument
recursively; a node promoted unchanged is the RFC's case where a right subtree is shallower.
The test suite checks this against a direct recursive implementation. Working level by level
keeps it iterative and fast (about 2n SHA-256 calls, no recursion per node).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

HASH_SIZE = 32
_LEAF = b"\x00"
_NODE = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE + left + right).digest()


def _leaf_level(leaves: Sequence[bytes]) -> list[bytes]:
    sha = hashlib.sha256
    return [sha(_LEAF + d).digest() for d in leaves]


def _next_level(level: list[bytes]) -> list[bytes]:
    sha = hashlib.sha256
    up = [sha(_NODE + a + b).digest() for a, b in zip(level[0::2], level[1::2])]
    if len(level) % 2:
        up.append(level[-1])  # unpaired node moves up unchanged (RFC: shallower right subtree)
    return up


def tree_head(leaves: Sequence[bytes]) -> bytes:
    """MTH of ``leaves`` (raw leaf data, not yet hashed)."""
    if not leaves:
        return EMPTY_ROOT
    level = _leaf_level(leaves)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


# The tree is built a subtree of BLOCK leaves at a time (a power of two: level-wise pairing
# never crosses an aligned block of 2^j leaves, so each block's nodes are the tree's own), and
# only the blocks' roots are kept: a 5M-line file takes a block's digests beside it, not every
# level's (160 MB for the leaf level alone, against about 0.8 GB as lists of ints and of bytes
# before the levels were packed).
BLOCK = 1 << 20
# Digests made a batch at a time, joined into their level's buffer.
_HASH_BATCH = 1 << 16


# Bytes searched for newlines at a time, instead of one comparison array as big as the file.
SCAN_BYTES = 1 << 22


def line_bounds(data: bytes, block: int):
    """(starts, ends) of the lines of a `.jsonl` buffer without their ``\n``, as
    ``package.split_lines`` cuts them (a missing final newline keeps the last partial line),
    as int64 arrays yielded ``block`` lines at a time (the last block shorter): only a block's
    bounds are held, and the newlines of one scan step."""
    import numpy as np

    raw = np.frombuffer(data, dtype=np.uint8)
    step = SCAN_BYTES  # read at each call: tests scan in small steps
    pending: list = []
    count, start = 0, 0  # newlines found and not yielded; where the next line starts
    for at in range(0, len(raw), step):
        found = np.flatnonzero(raw[at:at + step] == 0x0A).astype(np.int64) + at
        pending.append(found)
        count += len(found)
        while count >= block:
            ends = np.concatenate(pending)
            take, rest = ends[:block], ends[block:]
            yield np.concatenate([np.array([start], dtype=np.int64), take[:-1] + 1]), take
            start = int(take[-1]) + 1
            pending, count = [rest], len(rest)
    ends = np.concatenate(pending) if pending else np.zeros(0, dtype=np.int64)
    last = int(ends[-1]) + 1 if len(ends) else start
    if last < len(data):
        ends = np.append(ends, len(data))  # the last line has no newline
    if len(ends):
        yield np.concatenate([np.array([start], dtype=np.int64), ends[:-1] + 1]), ends


def tree_head_of_lines(data: bytes) -> bytes:
    """``tree_head(split_lines(data))`` straight from the file's bytes: no list of a million
    line objects, each leaf is hashed from a slice and dropped."""
    return tree_head_and_size_of_lines(data)[0]


def tree_head_and_size_of_lines(data: bytes) -> tuple[bytes, int]:
    """(``tree_head_of_lines(data)``, the number of leaves it hashed)."""
    block = BLOCK  # read at each call: tests build trees in small blocks
    if block < 1 or block & (block - 1):
        raise ValueError(f"merkle.BLOCK must be a power of two, not {block}")
    sha = hashlib.sha256
    roots = bytearray()
    n = 0
    for starts, ends in line_bounds(data, block):
        m = len(starts)
        n += m
        level = bytearray()
        for at in range(0, m, _HASH_BATCH):  # digests as objects a batch at a time
            level += b"".join([sha(_LEAF + data[a:b]).digest()
                               for a, b in zip(starts[at:at + _HASH_BATCH].tolist(),
                                               ends[at:at + _HASH_BATCH].tolist())])
        del starts, ends
        # A last block of fewer leaves reduces to one node too: its levels' lengths have the
        # whole levels' parity (it starts at an even index), so the same nodes are promoted.
        while m > 1:
            level, m = _next_packed_level(level, m), (m + 1) // 2
        roots += level
    if not n:
        return EMPTY_ROOT, 0
    m = len(roots) // HASH_SIZE
    while m > 1:
        roots, m = _next_packed_level(roots, m), (m + 1) // 2
    return bytes(roots), n


def _next_packed_level(level: bytes | bytearray, n: int) -> bytearray:
    """``_next_level`` over ``n`` digests packed in one buffer."""
    sha = hashlib.sha256
    pairs = n // 2
    up = bytearray()
    for at in range(0, pairs, _HASH_BATCH):
        up += b"".join([sha(_NODE + level[j:j + 64]).digest()
                        for j in range(64 * at, 64 * min(pairs, at + _HASH_BATCH), 64)])
    if n % 2:
        up += level[64 * pairs:64 * pairs + HASH_SIZE]  # unpaired node moves up unchanged
    return up


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[n]): sibling hashes from the leaf up to the root."""
    return path_and_root(leaves, index)[0]


def path_and_root(leaves: Sequence[bytes], index: int) -> tuple[list[bytes], bytes]:
    """The inclusion path of ``index`` and the tree head, in one pass over the tree."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf index {index} is outside the tree of {n} leaves")
    level = _leaf_level(leaves)
    path: list[bytes] = []
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        # else: this node is promoted unchanged, so this level adds nothing to the path
        i >>= 1
        level = _next_level(level)
    return path, level[0]


def verify_inclusion(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes],
                     root: bytes) -> bool:
    """Check an inclusion proof exactly as RFC 9162 section 2.1.3.2 describes."""
    if isinstance(index, bool) or isinstance(tree_size, bool):
        return False
    if not (isinstance(index, int) and isinstance(tree_size, int)) or not 0 <= index < tree_size:
        return False
    if any(not isinstance(p, bytes) or len(p) != HASH_SIZE for p in path):
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
