"""Check codes at bit level: parity, extended Hamming SEC-DED, residues mod 2**k - 1.

Each code has a slow, obvious pure-Python reference (``*_ref``: bit loops, Python
integers, ``%``) and the stage model the protected arrays use (``@njit`` functions on
uint64 words with precomputed masks, what the hardware's XOR trees and end-around-carry
adders compute).  Tests hold the two to each other on random words and errors.

Widths: a protected word is 1..64 data bits (one element of a register).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit

__all__ = ["parity_ref", "parity", "SecDedCode", "secded_code", "residue_ref", "residue",
           "STATUS_OK", "STATUS_CORRECTED", "STATUS_DETECTED"]

STATUS_OK, STATUS_CORRECTED, STATUS_DETECTED = 0, 1, 2

_U1 = np.uint64(1)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


# ---- parity ------------------------------------------------------------------------------
def parity_ref(x: int) -> int:
    """Even-parity bit of a non-negative int: 1 when it has an odd number of ones."""
    return bin(int(x)).count("1") & 1


@njit(cache=True)
def popcount(x):
    """Ones in a uint64 (SWAR; what a tree of adders counts)."""
    x = x - ((x >> _U1) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit(cache=True)
def parity(x):
    """Even-parity bit of a uint64 word (an XOR tree), as uint64 0 or 1."""
    return popcount(x) & _U1


# ---- SEC-DED (extended Hamming) ---------------------------------------------------------------
def _hamming_r(width: int) -> int:
    r = 0
    while (1 << r) < width + r + 1:
        r += 1
    return r


class SecDedCode:
    """Extended Hamming code for ``width`` data bits: r Hamming bits plus one overall parity.

    Codeword positions 1..width+r; Hamming bit i sits at position 2**i, data bits fill
    the other positions in order.  The check word (r+1 bits) is stored beside the data:
    bit i (< r) is Hamming bit i, bit r the overall parity of data and Hamming bits.

    Attributes:
        width: data bits; r: Hamming bits; check_bits: r + 1.
        masks: (r,) uint64, data bits covered by each Hamming bit.
        data_pos: (width,) int64, codeword position of each data bit.
        pos_to_data: (width + r + 1,) int64, data bit at a position, -1 for a check bit.
    """

    def __init__(self, width: int):
        if not isinstance(width, int) or not 1 <= width <= 64:
            raise ValueError(f"width must be an int in [1, 64], not {width!r}")
        self.width, self.r = width, _hamming_r(width)
        self.check_bits = self.r + 1
        pos = [p for p in range(1, width + self.r + 1) if p & (p - 1)]
        self.data_pos = np.array(pos, np.int64)
        self.pos_to_data = np.full(width + self.r + 1, -1, np.int64)
        self.pos_to_data[self.data_pos] = np.arange(width)
        self.masks = np.array([sum(1 << d for d, p in enumerate(pos) if p >> i & 1) for i in range(self.r)],
                              np.uint64)

    # the pure-Python reference: build the codeword, XOR positions
    def encode_ref(self, data: int) -> int:
        """Check word (r+1 bits) of a data word, by building the codeword."""
        word = {int(p): (data >> d) & 1 for d, p in enumerate(self.data_pos)}
        check = 0
        for i in range(self.r):
            if sum(b for p, b in word.items() if p >> i & 1) & 1:
                check |= 1 << i
        overall = (bin(data).count("1") + bin(check).count("1")) & 1
        return check | (overall << self.r)

    def decode_ref(self, data: int, check: int):
        """(data after correction, status) of a received data word and check word."""
        syn = 0
        for d, p in enumerate(self.data_pos):
            if (data >> d) & 1:
                syn ^= int(p)
        for i in range(self.r):
            if (check >> i) & 1:
                syn ^= 1 << i
        odd = (bin(data).count("1") + bin(check).count("1")) & 1
        if syn == 0 and not odd:
            return data, STATUS_OK
        if odd:
            if syn == 0 or not (syn & (syn - 1)):
                return data, STATUS_CORRECTED  # the overall parity or a Hamming bit flipped
            if syn < len(self.pos_to_data) and self.pos_to_data[syn] >= 0:
                return data ^ (1 << int(self.pos_to_data[syn])), STATUS_CORRECTED
            return data, STATUS_DETECTED  # points past the codeword: at least three errors
        return data, STATUS_DETECTED

    # the stage model: XOR trees over masks (Numba)
    def encode(self, data) -> int:
        return int(_secded_encode(np.uint64(data), self.masks, self.r))

    def decode(self, data, check):
        d, s = _secded_decode(np.uint64(data), np.uint64(check), self.masks, self.r, self.pos_to_data)
        return int(d), int(s)


@functools.lru_cache(maxsize=None)
def secded_code(width: int) -> SecDedCode:
    """The (cached) SEC-DED code of a data width."""
    return SecDedCode(width)


@njit(cache=True)
def _secded_encode(data, masks, r):
    check = np.uint64(0)
    for i in range(r):
        check |= parity(data & masks[i]) << np.uint64(i)
    return check | ((parity(data) ^ parity(check)) << np.uint64(r))


@njit(cache=True)
def _secded_decode(data, check, masks, r, pos_to_data):
    low = check & ((_U1 << np.uint64(r)) - _U1)
    syn = np.uint64(0)
    for i in range(r):
        syn |= parity(data & masks[i]) << np.uint64(i)
    syn ^= low
    odd = parity(data) ^ parity(check)
    if syn == 0 and odd == 0:
        return data, STATUS_OK
    if odd == 1:
        if syn == 0 or (syn & (syn - _U1)) == 0:
            return data, STATUS_CORRECTED
        s = np.int64(syn)
        if s < len(pos_to_data) and pos_to_data[s] >= 0:
            return data ^ (_U1 << np.uint64(pos_to_data[s])), STATUS_CORRECTED
        return data, STATUS_DETECTED
    return data, STATUS_DETECTED


# ---- residues mod 2**k - 1 -------------------------------------------------------------------
def residue_ref(x: int, k: int) -> int:
    """x mod (2**k - 1) for a non-negative int."""
    return int(x) % ((1 << k) - 1)


@njit(cache=True)
def residue(x, k):
    """x mod (2**k - 1) of a uint64 by end-around-carry folding of k-bit digits
    (2**k = 1 mod 2**k - 1), what a residue generator's adder tree computes."""
    m = (_U1 << np.uint64(k)) - _U1
    while x > m:
        s = np.uint64(0)
        while x:
            s += x & m
            x = x >> np.uint64(k)
        x = s
    return np.uint64(0) if x == m else x
