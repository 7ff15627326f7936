"""Durable campaign results: one SQLite database per campaign.

Tables:

* ``meta(key, value)``: ``schema`` (:data:`SCHEMA_VERSION`), ``campaign`` (the
  campaign's canonical JSON), ``digest`` (of that JSON: a database whose campaign
  was edited is refused), ``total`` (trials planned), ``workload`` (JSON: the
  workload's ``ref`` -- model name or ``"module:function"``, None for an in-memory
  one --, ``name``, ``digest`` over its parameters and data, ``batch``,
  ``outcome``; absent in databases written before workloads existed);
* ``strata(stratum, format, gemms, population, trials, first)``;
* ``trials``: one row per finished trial, its columns the fields of
  :class:`faults.TrialResult` in order, ``trial`` the primary key, so a trial can be
  stored only once.

The database runs in WAL mode; every :meth:`ResultStore.write` is one transaction, so
a process killed at any moment leaves every committed trial in place and none half
written.  Resuming runs exactly the trials that are not in ``trials``.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from ._spec import ModelCampaign
from ._trial import TrialResult

__all__ = ["ResultStore", "StoreError", "CampaignMismatchError"]

#: Version of the database layout this code reads and writes.
SCHEMA_VERSION = 1
#: Columns of the ``trials`` table: a :class:`TrialResult`'s fields.
TRIAL_COLUMNS = TrialResult._fields

_TYPES = {"trial": "INTEGER PRIMARY KEY", "stratum": "INTEGER NOT NULL", "format": "TEXT NOT NULL",
          "gemm": "INTEGER NOT NULL", "layer": "TEXT NOT NULL", "grp": "INTEGER NOT NULL",
          "row0": "INTEGER NOT NULL", "col0": "INTEGER NOT NULL", "rows": "INTEGER NOT NULL",
          "cols": "INTEGER NOT NULL", "register": "TEXT NOT NULL", "bit": "INTEGER NOT NULL",
          "pe_row": "INTEGER NOT NULL", "pe_col": "INTEGER NOT NULL", "cycle": "INTEGER NOT NULL",
          "outcome": "TEXT NOT NULL", "effect": "TEXT NOT NULL", "tile_diff": "INTEGER NOT NULL",
          "top1_changed": "INTEGER NOT NULL", "correct_delta": "INTEGER NOT NULL", "max_abs_err": "REAL"}
_QCOLS = ", ".join(f'"{c}"' for c in TRIAL_COLUMNS)


class StoreError(ValueError):
    """A results database that cannot be used: not SQLite, corrupt, or not gemmfi's."""


class CampaignMismatchError(StoreError):
    """A results database that holds a different campaign than the one asked for."""


class ResultStore:
    """A campaign's results database (see the module docstring).

    Use :meth:`create` for a new campaign, :meth:`open` for an existing one; both
    check the file and raise :class:`StoreError` (or :class:`CampaignMismatchError`)
    with the reason.
    """

    def __init__(self, path, conn, campaign: ModelCampaign, total: int, workload: dict | None = None):
        self.path, self._conn, self.campaign, self.total = Path(path), conn, campaign, total
        #: The stored workload description (dict: ref, name, digest, batch, outcome) or None.
        self.workload = workload

    # ---- opening -----------------------------------------------------------------------
    @staticmethod
    def _connect(path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreError(f"results database must be a gemmfi SQLite database, not {str(path)!r} ({e})") from e
        return conn

    @classmethod
    def create(cls, path, campaign: ModelCampaign, strata, workload: dict | None = None) -> "ResultStore":
        """A new database at ``path`` (which must not exist) for ``campaign`` and its
        :class:`faults.Stratum` tuple; ``workload``: the workload's description
        (ref, name, digest, batch, outcome), stored as ``meta.workload``."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"path must not exist for a new campaign, not {str(path)!r}")
        # built under a temporary name and renamed into place once complete, so a kill
        # at any moment leaves either no database or a whole one (never an empty file)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        conn = cls._connect(tmp)
        total = sum(s.trials for s in strata)
        cols = ", ".join(f'"{c}" {_TYPES[c]}' for c in TRIAL_COLUMNS)
        with conn:
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("CREATE TABLE strata (stratum INTEGER PRIMARY KEY, format TEXT NOT NULL, gemms TEXT NOT NULL,"
                         " population INTEGER NOT NULL, trials INTEGER NOT NULL, first INTEGER NOT NULL)")
            conn.execute(f"CREATE TABLE trials ({cols})")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema", str(SCHEMA_VERSION)), ("campaign", campaign.to_json()), ("digest", campaign.digest),
                ("total", str(total))] + ([("workload", json.dumps(workload, sort_keys=True))] if workload else []))
            conn.executemany("INSERT INTO strata VALUES (?, ?, ?, ?, ?, ?)", [
                (s.index, s.format, json.dumps(list(s.gemms)), str(s.population), s.trials, s.first) for s in strata])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()  # the last connection: SQLite folds the WAL back and removes it
        os.replace(tmp, path)
        return cls(path, cls._connect(path), campaign, total, workload)

    @classmethod
    def open(cls, path, campaign: ModelCampaign | None = None, workload_digest: str | None = None) -> "ResultStore":
        """An existing database; with ``campaign``, it must hold that campaign; with
        ``workload_digest``, its stored workload must have that digest (else
        :class:`CampaignMismatchError` naming both digests).  A database whose
        stored campaign JSON no longer has its stored digest (edited) is refused
        (:class:`CampaignMismatchError`)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"results database must be an existing file, not {str(path)!r}")
        conn = cls._connect(path)
        bad = f"results database must be a gemmfi campaign database, not {str(path)!r}"
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise StoreError(f"{bad} (corrupt: {ok})")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"meta", "strata", "trials"} <= tables:
                raise StoreError(f"{bad} (tables {sorted(tables)})")
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            if meta.get("schema") != str(SCHEMA_VERSION):
                raise StoreError(f"results database schema must be {SCHEMA_VERSION}, not {meta.get('schema')!r} "
                                 f"in {str(path)!r}")
            cols = [r[1] for r in conn.execute("PRAGMA table_info(trials)")]
            if tuple(cols) != TRIAL_COLUMNS:
                raise StoreError(f"{bad} (trials columns {cols})")
            stored = ModelCampaign.from_json(meta["campaign"])
            if "digest" in meta and stored.digest != meta["digest"]:
                raise CampaignMismatchError(
                    f"results database {str(path)!r} must hold the campaign its digest names, not an edited one "
                    f"(stored digest {meta['digest']}, stored campaign's digest now {stored.digest})")
            wmeta = json.loads(meta["workload"]) if "workload" in meta else None
            if wmeta is not None and not isinstance(wmeta, dict):
                raise ValueError(f"workload metadata must be an object, not {type(wmeta).__name__}")
            total = int(meta["total"])
            n_strata = conn.execute("SELECT COUNT(*), COALESCE(SUM(trials), 0) FROM strata").fetchone()
            if n_strata[1] != total:
                raise StoreError(f"{bad} (strata hold {n_strata[1]} trials, meta says {total})")
            lo, hi = conn.execute("SELECT MIN(trial), MAX(trial) FROM trials").fetchone()
            if lo is not None and (lo < 0 or hi >= total):
                raise StoreError(f"{bad} (trial ids [{lo}, {hi}] outside [0, {total}))")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreError(f"{bad} ({e})") from e
        except StoreError:
            conn.close()
            raise
        except (KeyError, ValueError, TypeError) as e:
            conn.close()
            raise StoreError(f"{bad} (bad metadata: {e})") from e
        if campaign is not None and campaign.to_json() != stored.to_json():
            conn.close()
            raise CampaignMismatchError(
                f"results database {str(path)!r} must hold the campaign asked for, not another one "
                f"(stored digest {stored.digest}, asked {campaign.digest}); use another path or resume it as is")
        if workload_digest is not None and wmeta is not None and wmeta.get("digest") != workload_digest:
            conn.close()
            raise CampaignMismatchError(
                f"results database {str(path)!r} must be used with the workload it was run on, not another one "
                f"(stored workload digest {wmeta.get('digest')}, this workload's digest {workload_digest}: "
                f"its parameters or data changed)")
        return cls(path, conn, stored, total, wmeta)

    @staticmethod
    def stored(path) -> int:
        """Trials stored in the database at ``path``, read without opening it as a store
        (read-only, never creating the file; 0 when it or its ``trials`` table does not
        exist yet): for watching a campaign that another process is writing."""
        if not os.path.exists(path):
            return 0
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.Error:
            return 0

    # ---- reading and writing -------------------------------------------------------------
    def strata(self) -> list:
        """Rows (stratum, format, gemms tuple, population, trials, first)."""
        return [(s, f, tuple(json.loads(g)), int(p), n, first) for s, f, g, p, n, first in
                self._conn.execute("SELECT * FROM strata ORDER BY stratum")]

    def done(self) -> set:
        """Indices of the trials stored."""
        return {r[0] for r in self._conn.execute("SELECT trial FROM trials")}

    def pending(self) -> list:
        """Indices of the trials not stored yet, ascending."""
        done = self.done()
        return [i for i in range(self.total) if i not in done]

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]

    def write(self, rows) -> None:
        """Store trial results (:class:`faults.TrialResult`) in one transaction.
        A trial stored twice raises :class:`StoreError`."""
        rows = list(rows)
        if not rows:
            return
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(f"INSERT INTO trials ({_QCOLS}) VALUES ({', '.join('?' * len(TRIAL_COLUMNS))})",
                                       rows)
        except sqlite3.IntegrityError as e:
            raise StoreError(f"trials must be stored once, not again ({e}) in {str(self.path)!r}") from e

    def rows(self) -> list[TrialResult]:
        """Every stored trial's result, ordered by trial index."""
        return [TrialResult._make(r) for r in self._conn.execute(f"SELECT {_QCOLS} FROM trials ORDER BY trial")]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
