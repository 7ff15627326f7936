"""Durable campaign results: one SQLite database per campaign.

Tables:

* ``meta(key, value)``: ``schema`` (:data:`SCHEMA_VERSION`), ``campaign`` (the
  campaign's canonical JSON), ``digest`` (of that JSON: a database whose campaign
  was edited is refused), ``total`` (trials planned), ``workload`` (JSON: the
  workload's ``ref`` -- model name or ``"module:function"``, None for an in-memory
  one --, ``name``, ``digest`` over its parameters and data, ``batch``,
  ``outcome``), ``header_digest`` (SHA-256 of every other meta entry and every strata
  row, written once at creation), ``trials_count`` and ``trials_sum`` (how many trial
  rows are stored and the sum mod 2**64 of their row digests, updated in the
  transaction that stores them);
* ``strata(stratum, format, gemms, population, trials, first)``;
* ``trials``: one row per finished trial, its columns the fields of
  :class:`faults.TrialResult` in order (a permanent-fault campaign's: of
  :class:`faults.ChipResult`, one row per chip) and then ``row_digest`` (the first 16
  hex digits of the SHA-256 of the row's canonical JSON), ``trial`` the primary key, so
  a trial can be stored only once.

Schema versions: 2 (row and header digests) and 3 (the same, and permanent-fault
campaigns with their chip columns) are read; 3 is written.  A transient campaign's
database is the same in both.

Every reader verifies: opening a database runs SQLite's integrity check and checks
the header digest, the campaign's own digest, every row digest and the rows' count
and sum, so a database changed by anything but this module (a flipped byte, a
truncated copy, an edited row) is refused with :class:`StoreCorruptError` naming the
file and what failed, never read into a report.  Readers (``readonly=True``) open the
file read-only and write nothing to it.

The database runs in WAL mode; every :meth:`ResultStore.write` is one transaction, so
a process killed at any moment leaves every committed trial in place and none half
written.  Resuming runs exactly the trials that are not in ``trials``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from pathlib import Path

from ._chip_trial import ChipResult
from ._spec import ModelCampaign
from ._trial import TrialResult

__all__ = ["ResultStore", "StoreError", "StoreCorruptError", "CampaignMismatchError"]

#: Version of the database layout this code writes (2: row and header digests;
#: 3: permanent-fault campaigns, their ``trials`` table holding chips).
SCHEMA_VERSION = 3
#: Versions this code reads (a version-2 database is a transient campaign's, laid out as in 3).
READ_VERSIONS = ("2", "3")
#: Columns of the ``trials`` table: a :class:`TrialResult`'s fields.
TRIAL_COLUMNS = TrialResult._fields
#: Columns of a permanent-fault campaign's ``trials`` table: a :class:`ChipResult`'s fields.
CHIP_COLUMNS = ChipResult._fields

_TYPES = {"trial": "INTEGER PRIMARY KEY", "stratum": "INTEGER NOT NULL", "format": "TEXT NOT NULL",
          "gemm": "INTEGER NOT NULL", "layer": "TEXT NOT NULL", "grp": "INTEGER NOT NULL",
          "row0": "INTEGER NOT NULL", "col0": "INTEGER NOT NULL", "rows": "INTEGER NOT NULL",
          "cols": "INTEGER NOT NULL", "register": "TEXT NOT NULL", "bit": "INTEGER NOT NULL",
          "pe_row": "INTEGER NOT NULL", "pe_col": "INTEGER NOT NULL", "cycle": "INTEGER NOT NULL",
          "outcome": "TEXT NOT NULL", "effect": "TEXT NOT NULL", "tile_diff": "INTEGER NOT NULL",
          "top1_changed": "INTEGER NOT NULL", "correct_delta": "INTEGER NOT NULL", "max_abs_err": "REAL",
          "rate": "REAL NOT NULL", "stuck": "TEXT NOT NULL", "map_seed": "INTEGER NOT NULL",
          "faulty_pes": "INTEGER NOT NULL", "examples": "INTEGER NOT NULL", "critical": "INTEGER NOT NULL",
          "critical_frac": "REAL NOT NULL", "accuracy": "REAL", "fault_free_accuracy": "REAL",
          "out_diff": "INTEGER NOT NULL"}


def _layout(campaign: ModelCampaign):
    """(columns, row type) of a campaign's ``trials`` table."""
    return (CHIP_COLUMNS, ChipResult) if campaign.permanent else (TRIAL_COLUMNS, TrialResult)


def _qcols(cols) -> str:
    return ", ".join(f'"{c}"' for c in cols)


class StoreError(ValueError):
    """A results database that cannot be used: not SQLite, corrupt, or not gemmfi's."""


class StoreCorruptError(StoreError):
    """A results database whose contents fail a check: SQLite's integrity check, a
    digest, or the stored trial count and sum."""


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
        #: The ``trials`` table's columns and the row type :meth:`rows` gives back
        #: (:class:`TrialResult`, or :class:`ChipResult` for a permanent campaign).
        self.columns, self.row_type = _layout(campaign)
        #: The stored workload description (dict: ref, name, digest, batch, outcome) or None.
        self.workload = workload

    # ---- opening -----------------------------------------------------------------------
    @staticmethod
    def _connect(path, readonly: bool = False) -> sqlite3.Connection:
        if readonly:
            # a URI in read-only mode: SQLite never creates, extends or writes the file.
            # Without a -wal file no writer is active (a writer in WAL mode keeps one),
            # so the file is read as immutable: SQLite then creates no -wal/-shm beside
            # it either.  A writer that starts meanwhile writes to its WAL, not the file;
            # a checkpoint racing this read could only fail the digests (refused).
            wal = Path(f"{path}-wal")
            uri = f"{Path(path).absolute().as_uri()}?mode=ro" + ("" if wal.exists() else "&immutable=1")
            return sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
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
        clean_temporaries(path)
        # built under a temporary name and renamed into place once complete, so a kill
        # at any moment leaves either no database or a whole one (never an empty file)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        conn = cls._connect(tmp)
        total = sum(s.trials for s in strata)
        cols = ", ".join(f'"{c}" {_TYPES[c]}' for c in _layout(campaign)[0])
        with conn:
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("CREATE TABLE strata (stratum INTEGER PRIMARY KEY, format TEXT NOT NULL, gemms TEXT NOT NULL,"
                         " population INTEGER NOT NULL, trials INTEGER NOT NULL, first INTEGER NOT NULL)")
            conn.execute(f"CREATE TABLE trials ({cols}, row_digest TEXT NOT NULL)")
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema", str(SCHEMA_VERSION)), ("campaign", campaign.to_json()), ("digest", campaign.digest),
                ("total", str(total))] + ([("workload", json.dumps(workload, sort_keys=True))] if workload else []))
            conn.executemany("INSERT INTO strata VALUES (?, ?, ?, ?, ?, ?)", [
                (s.index, s.format, json.dumps(list(s.gemms)), str(s.population), s.trials, s.first) for s in strata])
            # the header digest covers every meta entry and strata row written above
            # (whatever they are), so it is computed from what the database holds
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("header_digest", _header_digest(conn)), ("trials_count", "0"), ("trials_sum", "0")])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()  # the last connection: SQLite folds the WAL back and removes it
        os.replace(tmp, path)
        return cls(path, cls._connect(path), campaign, total, workload)

    @classmethod
    def open(cls, path, campaign: ModelCampaign | None = None, workload_digest: str | None = None, *,
             readonly: bool = False) -> "ResultStore":
        """An existing database; with ``campaign``, it must hold that campaign; with
        ``workload_digest``, its stored workload must have that digest (else
        :class:`CampaignMismatchError` naming both digests).  A database whose
        stored campaign JSON no longer has its stored digest (edited) is refused
        (:class:`CampaignMismatchError`).

        Verifies the whole database (see the module docstring) and raises
        :class:`StoreError` (:class:`StoreCorruptError` when a check fails) naming the
        file and what failed.  ``readonly``: open the file read-only (a reader: the
        file is never written, not even created); :meth:`write` then fails.  A
        writable open also removes the temporary files a killed :meth:`create` left.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"results database must be an existing file, not {str(path)!r}")
        if path.stat().st_size == 0:
            raise StoreError(f"results database must be a gemmfi campaign database, not {str(path)!r} (an empty file)")
        if not readonly:
            clean_temporaries(path)
        bad = f"results database must be a gemmfi campaign database, not {str(path)!r}"
        try:
            conn = cls._connect(path, readonly)
        except sqlite3.Error as e:
            raise StoreError(f"{bad} ({e})") from e
        try:
            conn.execute("BEGIN")  # one read transaction: the checks see one state of the file
            stored, total, meta = _verify(conn, path)
            wmeta = json.loads(meta["workload"]) if "workload" in meta else None
            if wmeta is not None and not isinstance(wmeta, dict):
                raise ValueError(f"workload metadata must be an object, not {type(wmeta).__name__}")
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreCorruptError(f"{bad} (SQLite: {e})") from e
        except StoreError:
            conn.close()
            raise
        except (KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
            conn.close()
            raise StoreCorruptError(f"{bad} (bad metadata: {e})") from e
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
        exist yet): for watching a campaign that another process is writing.  Not
        verified: use :meth:`open` to read results."""
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            return 0
        try:
            conn = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True, timeout=5)
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
        """Store trial results (:class:`faults.TrialResult`) in one transaction, each with
        its row digest, and the stored count and digest sum updated in the same one.
        A trial stored twice raises :class:`StoreError`."""
        cols = self.columns
        rows = list(rows)
        for r in rows:
            if not isinstance(r, self.row_type):
                raise TypeError(f"rows must be {self.row_type.__name__} values for this campaign, "
                                f"not {type(r).__name__}")
        rows = [tuple(_canonical(r, cols)) for r in rows]
        if not rows:
            return
        digests = [_row_digest(r, cols) for r in rows]
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    f"INSERT INTO trials ({_qcols(cols)}, row_digest) VALUES ({', '.join('?' * (len(cols) + 1))})",
                    [r + (d,) for r, d in zip(rows, digests)])
                meta = dict(self._conn.execute(
                    "SELECT key, value FROM meta WHERE key IN ('trials_count', 'trials_sum')"))
                count = int(meta["trials_count"]) + len(rows)
                total = (int(meta["trials_sum"]) + sum(int(d, 16) for d in digests)) % _MOD
                self._conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                                       [(str(count), "trials_count"), (str(total), "trials_sum")])
        except sqlite3.IntegrityError as e:
            raise StoreError(f"trials must be stored once, not again ({e}) in {str(self.path)!r}") from e
        except sqlite3.OperationalError as e:
            raise StoreError(f"results database {str(self.path)!r} must be writable, not ({e})") from e

    def rows(self) -> list:
        """Every stored trial's result (:class:`TrialResult`, or :class:`ChipResult` for a
        permanent campaign), ordered by trial index; each row's digest is checked again
        (:class:`StoreCorruptError` if one fails)."""
        out = []
        cols = self.columns
        try:
            for r in self._conn.execute(f"SELECT {_qcols(cols)}, row_digest FROM trials ORDER BY trial"):
                if _row_digest(r[:-1], cols) != r[-1]:
                    raise StoreCorruptError(f"results database {str(self.path)!r} must hold the rows gemmfi wrote, "
                                            f"not an altered trial {r[0]!r} (row digest mismatch)")
                out.append(self.row_type._make(r[:-1]))
        except sqlite3.DatabaseError as e:
            raise StoreCorruptError(f"results database {str(self.path)!r} must be readable, not ({e})") from e
        return out

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- digests, verification, temporary files ------------------------------------------------
_MOD = 1 << 64
#: meta keys outside the header digest: the digest itself and what each write updates
_RUNNING = ("header_digest", "trials_count", "trials_sum")


def _canonical(row, cols=TRIAL_COLUMNS) -> list:
    """A trial row (columns ``cols``) with each value in the Python type SQLite gives
    back for its column (REAL: float, NaN as None as SQLite stores it; INTEGER: int;
    TEXT: str)."""
    out = []
    for c, v in zip(cols, row):
        t = _TYPES[c]
        if v is None:
            out.append(None)
        elif t.startswith("REAL"):
            v = float(v)
            out.append(None if math.isnan(v) else v)
        elif t.startswith("INTEGER"):
            out.append(int(v))
        else:
            out.append(str(v))
    return out


def _row_digest(row, cols=TRIAL_COLUMNS) -> str:
    """First 16 hex digits of the SHA-256 of a row's canonical JSON (floats as their
    exact hex, so the digest does not depend on decimal printing)."""
    vals = [v.hex() if isinstance(v, float) else v for v in _canonical(row, cols)]
    return hashlib.sha256(json.dumps(vals, separators=(",", ":")).encode()).hexdigest()[:16]


def _header_digest(conn) -> str:
    """SHA-256 (hex) of every meta entry but the running ones and every strata row."""
    meta = sorted((k, v) for k, v in conn.execute("SELECT key, value FROM meta") if k not in _RUNNING)
    strata = [list(r) for r in conn.execute("SELECT * FROM strata ORDER BY stratum")]
    return hashlib.sha256(json.dumps([meta, strata], separators=(",", ":")).encode()).hexdigest()


def _verify(conn, path):
    """Every check of a database opened by :meth:`ResultStore.open`; returns (campaign,
    total, meta) or raises :class:`StoreError` / :class:`StoreCorruptError`."""
    bad = f"results database must be a gemmfi campaign database, not {str(path)!r}"
    corrupt = f"results database {str(path)!r} must hold what gemmfi wrote, not altered contents"
    ok = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
    if ok != ["ok"]:
        found = "; ".join(x for x in "\n".join(map(str, ok)).splitlines() if x.strip() and not x.startswith("***"))
        raise StoreCorruptError(f"{corrupt} (SQLite integrity check: {found})")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"meta", "strata", "trials"} <= tables:
        raise StoreError(f"{bad} (tables {sorted(tables)})")
    meta = dict(conn.execute("SELECT key, value FROM meta"))
    if meta.get("schema") not in READ_VERSIONS:
        old = " (written by an older gemmfi without checksums: run the campaign again into a new file)" \
            if meta.get("schema") == "1" else " (written by a newer gemmfi: read it with that one)" \
            if str(meta.get("schema")).isdigit() and int(meta["schema"]) > SCHEMA_VERSION else ""
        raise StoreError(f"results database schema must be {' or '.join(READ_VERSIONS)}, not {meta.get('schema')!r} "
                         f"in {str(path)!r}{old}")
    cols = tuple(r[1] for r in conn.execute("PRAGMA table_info(trials)"))
    if cols not in (TRIAL_COLUMNS + ("row_digest",), CHIP_COLUMNS + ("row_digest",)):
        raise StoreError(f"{bad} (trials columns {list(cols)})")
    cols = cols[:-1]
    if meta.get("header_digest") != _header_digest(conn):
        try:  # name the mismatch when the stored campaign itself was edited (still a valid campaign)
            edited = ModelCampaign.from_json(meta["campaign"]).digest
        except (KeyError, ValueError, TypeError):
            edited = None
        if edited is not None and edited != meta.get("digest"):
            raise StoreCorruptError(
                f"{corrupt} (header digest mismatch: the stored campaign was edited: its digest is now {edited}, "
                f"stored {meta.get('digest')})")
        raise StoreCorruptError(f"{corrupt} (header digest mismatch: campaign, totals or strata changed)")
    stored = ModelCampaign.from_json(meta["campaign"])
    if stored.digest != meta["digest"] or stored.to_json() != meta["campaign"]:
        raise StoreCorruptError(f"{corrupt} (campaign digest mismatch)")
    if cols != _layout(stored)[0] or (stored.permanent and meta["schema"] == "2"):
        raise StoreCorruptError(f"{corrupt} (a {stored.fault_model} campaign with trials columns {list(cols)}, "
                                f"schema {meta['schema']})")
    total = int(meta["total"])
    n_strata = conn.execute("SELECT COUNT(*), COALESCE(SUM(trials), 0) FROM strata").fetchone()
    if n_strata[1] != total:
        raise StoreCorruptError(f"{corrupt} (strata hold {n_strata[1]} trials, meta says {total})")
    count, acc = 0, 0
    for r in conn.execute(f"SELECT {_qcols(cols)}, row_digest FROM trials"):
        if not 0 <= r[0] < total:
            raise StoreCorruptError(f"{corrupt} (trial id {r[0]!r} outside [0, {total}))")
        if _row_digest(r[:-1], cols) != r[-1]:
            raise StoreCorruptError(f"{corrupt} (row digest mismatch in trial {r[0]})")
        count += 1
        acc = (acc + int(r[-1], 16)) % _MOD
    if (str(count), str(acc)) != (meta["trials_count"], meta["trials_sum"]):
        raise StoreCorruptError(f"{corrupt} ({count} trial rows with digest sum {acc}, "
                                f"meta says {meta['trials_count']} with {meta['trials_sum']}: rows lost or added)")
    return stored, total, meta


def clean_temporaries(path) -> list:
    """Remove what a killed :meth:`ResultStore.create` of ``path`` left: its temporary
    database ``.NAME.PID.tmp`` and that file's ``-journal``/``-wal``/``-shm``, when
    process PID is gone, and the ``-journal``/``-wal``/``-shm`` of ``path`` when
    ``path`` itself does not exist.  Returns the paths removed."""
    path = Path(path)
    gone = []
    for f in path.parent.glob(f".{path.name}.*.tmp*"):
        rest = f.name[len(path.name) + 2:]
        pid, _, suffix = rest.partition(".tmp")
        if not pid.isdigit() or suffix not in ("", "-journal", "-wal", "-shm"):
            continue
        if int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another process is creating it right now
        f.unlink(missing_ok=True)
        gone.append(f)
    if not path.exists():
        for suffix in ("-journal", "-wal", "-shm"):
            f = path.with_name(path.name + suffix)
            if f.exists():
                f.unlink()
                gone.append(f)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
