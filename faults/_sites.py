"""Site decoding: the fault-site population of a campaign, its strata, and the map
trial index -> :class:`TrialSite`.

This module owns where a trial's fault lands.  ``level="register"``: the model's GEMMs
are run on the array tile by tile, an output tile being ``tile_rows x tile_cols``
elements of D computed with the full K (so the accumulation order is the fast
path's); one tile is one run of the array, and its fault sites are the array's
population for that run (:meth:`simulator.SystolicArray.fault_sites`: registers' bits
x PEs x cycles, restricted to the campaign's registers).  A site is (GEMM, group,
tile, register, bit, PE, cycle of the tile's run); the population is the sum over
tiles.  ``level="value"`` is the MPGemmFI method: a site is (GEMM, group, row, col,
bit of D in the accumulator format).

Strata: one per input format (``stratify="format"``) or per format and GEMM
(``"layer"``); each gets ``trials`` trials, or the sample-size formula's n for its
population.  Sites are drawn without replacement through a keyed permutation of the
stratum's population, so trial ``i``'s site is a pure function of ``(campaign, i)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import get_format

from ._spec import ModelCampaign
from ._stats import KeyedPermutation, sample_size

__all__ = ["Stratum", "TrialSite", "SiteSpace"]


@dataclass(frozen=True)
class Stratum:
    """One stratum: a format and its GEMMs, the population of fault sites, the trials.

    Attributes:
        index: stratum number; format: input format; gemms: GEMM indices;
        population: fault sites N; trials: n; first: the first trial's index.
    """

    index: int
    format: str
    gemms: tuple
    population: int
    trials: int
    first: int


@dataclass(frozen=True)
class TrialSite:
    """Where trial ``trial``'s fault lands.

    Attributes:
        trial, stratum, format, gemm, layer (the GEMM's name), group;
        row0, col0, rows, cols: the output tile (value level: the element, 1 x 1);
        register ("output" at value level), bit, pe (row, col) and cycle of the tile's
        run ((-1, -1) and -1 at value level).
    """

    trial: int
    stratum: int
    format: str
    gemm: int
    layer: str
    group: int
    row0: int
    col0: int
    rows: int
    cols: int
    register: str
    bit: int
    pe: tuple
    cycle: int


class _GemmSites:
    """The fault sites of one GEMM, in a fixed order: flat index -> site fields.

    Register level: groups x row strips x column tiles, each tile's sites ordered
    (cycle, PE, register, bit) from the array's population for that tile's run
    (``population(m, k, n)``: a :class:`simulator.FaultSites`, or a
    :class:`protection.ProtectedSites`, whose edge registers follow as (cycle,
    column, register, bit)).  Value level:
    (group, row, col, bit).
    """

    def __init__(self, campaign: ModelCampaign, site, population):
        self.site = site
        G, M, N = site.groups, site.M, site.N
        if campaign.level == "value":
            self.tiles = None
            self.width = get_format(campaign.accumulator).container_bits
            self.size = G * M * N * self.width
            return
        tm, tn = campaign.tile
        self.tm, self.tn = tm, tn
        self.nrt, self.nct = -(-M // tm), -(-N // tn)
        self.m_last, self.n_last = M - (self.nrt - 1) * tm, N - (self.nct - 1) * tn
        keep = campaign.registers
        R, C = campaign.array.rows, campaign.array.cols
        # the population of a tile's run by (last row strip?, last col?): its registers
        # (the campaign's selection), PE columns and sites per cycle; a protected
        # array's edge registers (below the bottom PE row, one per column) come after
        # the PEs' sites of each tile
        self.tiles, self.tsize = {}, {}
        for lr in (0, 1):
            for lc in (0, 1):
                fs = population(self.m_last if lr else tm, site.K, self.n_last if lc else tn)
                regs = tuple((n, w) for n, w, sc in fs.registers if (keep is None or n in keep) and sc != "edge")
                edge = tuple((n, w) for n, w, sc in fs.registers if (keep is None or n in keep) and sc == "edge")
                bits = sum(w for _, w in regs)
                ebits = sum(w for _, w in edge)
                self.tiles[(lr, lc)] = (regs, bits, R * C, C, edge, ebits, bits * R * C * fs.cycles)
                self.tsize[(lr, lc)] = (bits * R * C + ebits * C) * fs.cycles
        self.strip = {lr: (self.nct - 1) * self.tsize[(lr, 0)] + self.tsize[(lr, 1)] for lr in (0, 1)}
        self.group_size = (self.nrt - 1) * self.strip[0] + self.strip[1]
        self.size = G * self.group_size

    def decode(self, u: int) -> dict:
        s = self.site
        if self.tiles is None:  # value level
            u, bit = divmod(u, self.width)
            u, col = divmod(u, s.N)
            group, row = divmod(u, s.M)
            return dict(group=group, row0=row, col0=col, rows=1, cols=1, register="output", bit=bit,
                        pe=(-1, -1), cycle=-1)
        group, u = divmod(u, self.group_size)
        full = (self.nrt - 1) * self.strip[0]
        if u < full:
            ti, u = divmod(u, self.strip[0])
            lr = 0
        else:
            ti, u, lr = self.nrt - 1, u - full, 1
        fullc = (self.nct - 1) * self.tsize[(lr, 0)]
        if u < fullc:
            tj, u = divmod(u, self.tsize[(lr, 0)])
            lc = 0
        else:
            tj, u, lc = self.nct - 1, u - fullc, 1
        regs, bits, pes, pe_cols, edge, ebits, pe_block = self.tiles[(lr, lc)]
        if u < pe_block:
            u, b = divmod(u, bits)
            cycle, pe = divmod(u, pes)
            pe = divmod(pe, pe_cols)
        else:  # an edge register: location (rows, col)
            u, b = divmod(u - pe_block, ebits)
            cycle, col = divmod(u, pe_cols)
            pe, regs = (pes // pe_cols, col), edge
        for name, w in regs:
            if b < w:
                break
            b -= w
        return dict(group=group, row0=ti * self.tm, col0=tj * self.tn, rows=self.m_last if lr else self.tm,
                    cols=self.n_last if lc else self.tn, register=name, bit=b, pe=pe, cycle=cycle)


class SiteSpace:
    """The strata of a campaign and the map trial index -> :class:`TrialSite`.

    Built from the GEMM sites of the model on each format (``gemms[format]``:
    tuple of :class:`models.GemmSite`); the same on every machine for the same campaign.
    """

    def __init__(self, campaign: ModelCampaign, gemms: dict):
        self.campaign = campaign
        self.gemms = gemms
        self.spaces: dict = {}
        self._populations: dict = {}
        strata = []
        first = 0
        for fmt in campaign.formats:
            spaces = [_GemmSites(campaign, s, self._population_of(fmt)) for s in gemms[fmt]]
            self.spaces[fmt] = spaces
            groups = ([tuple(range(len(spaces)))] if campaign.stratify == "format"
                      else [(g,) for g in range(len(spaces))])
            for gs in groups:
                pop = sum(spaces[g].size for g in gs)
                n = campaign.trials if campaign.trials is not None else sample_size(
                    pop, campaign.margin, campaign.confidence, campaign.p)
                n = min(n, pop)
                strata.append(Stratum(len(strata), fmt, gs, pop, n, first))
                first += n
        self.strata = tuple(strata)
        self.total = first
        self._firsts = np.array([s.first for s in strata], np.int64)
        self._perms = {}

    def _population_of(self, fmt: str):
        """(m, k, n) -> the array's :class:`simulator.FaultSites` of one tile's run in
        format ``fmt`` (cached: tiles of a GEMM share a few shapes)."""
        c = self.campaign

        def population(m, k, n):
            key = (fmt, m, k, n)
            fs = self._populations.get(key)
            if fs is None:
                fs = self._populations[key] = c.array.fault_sites(m, k, n, fmt, c.accumulator)
            return fs

        return population

    def site(self, trial: int) -> TrialSite:
        """The fault of trial ``trial`` (0 <= trial < total): a pure function of
        (campaign, trial)."""
        if not 0 <= trial < self.total:
            raise ValueError(f"trial must be in [0, {self.total}), not {trial}")
        s = self.strata[int(np.searchsorted(self._firsts, trial, side="right")) - 1]
        perm = self._perms.get(s.index)
        if perm is None:
            perm = self._perms[s.index] = KeyedPermutation(s.population, (self.campaign.seed, s.index))
        u = perm(trial - s.first)
        spaces = self.spaces[s.format]
        for g in s.gemms:
            if u < spaces[g].size:
                break
            u -= spaces[g].size
        d = spaces[g].decode(u)
        pe = tuple(int(x) for x in d.pop("pe"))
        return TrialSite(trial=trial, stratum=s.index, format=s.format, gemm=g, layer=self.layer(s.format, g), pe=pe,
                         **d)

    def layer(self, fmt: str, gemm: int) -> str:
        """GEMM ``gemm``'s row name in reports: its position (zero-padded, so names
        sort in execution order) and its bridge name (``jax.named_scope`` scopes and
        primitive), e.g. ``"02:fc1/dot_general"``: two GEMMs never share a name."""
        sites = self.gemms[fmt]
        width = len(str(max(len(sites) - 1, 0)))
        return f"{gemm:0{width}d}:{sites[gemm].name}"
