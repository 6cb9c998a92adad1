"""Columnar scenarios and results for large markets (Apache Parquet through pyarrow).

What this module is for: a scenario of 10^6 MUs as text (TOML) costs minutes to parse and
gigabytes to hold as Python objects; as columns it is read in a second and held as a few
numpy arrays. The columnar scenario format (version :data:`COLUMNAR_VERSION`) is a folder
``NAME.parquet/`` (the layout Spark and Hive use for one dataset in several files) with

* ``asps.parquet``: one row per ASP, columns named as the ``[[asp]]`` fields;
* ``mus.parquet``: one row per MU, columns named as the ``[[mu]]`` fields, the nested
  weights as ``weights.accuracy``, ``weights.tokens``, ``weights.timeliness``; an absent
  optional value is a null;
* both files carry the ``[market]`` table (JSON) in their schema metadata under
  ``aigc.market``, the format name and version under ``aigc.format`` / ``aigc.version``
  and the pass-through tables under ``aigc.extra_tables``.

Validation is column-wise with the rules of ``market.scenario`` (one definition: the same
field rules, the same cross-field rules, the same messages naming the file and the field,
``mu[3].reward_max``), and the physical ranges of ``market.bounds`` column-wise. A
columnar result is a folder with ``summary.json`` (status,
certificate, timings), ``mus.parquet`` and ``asps.parquet`` (:func:`write_result_tables`).

pyarrow is imported lazily (it is the ``scale`` extra).

May import: numpy, pyarrow and ``market.scenario`` / ``market.model`` / ``market.errors`` / ``market.bounds`` /
``market.atomic``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from market.bounds import check_columns
from market.errors import ScenarioError, UserError
from market.model import Market
from market.scenario import (ASP_RULES, MU_RULES, ASPSpec, MarketConfig, MUSpec, QoEWeights, Scenario,
                             market_table, mu_cross_field_errors, parse_market_table, raise_first_cross_error,
                             unknown_asp_message)

#: Version of the columnar scenario / result format (``aigc.version`` in the schema metadata).
COLUMNAR_VERSION = 1
FORMAT_NAME = "aigc-scenario-columnar"
ASP_FILE, MU_FILE = "asps.parquet", "mus.parquet"
#: Rows per Parquet row group: a shard reader skips whole groups by their ASP statistics.
ROW_GROUP_ROWS = 65536


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise UserError("columnar (Parquet) files need pyarrow: pip install 'aigc-incentive[scale]'") from None
    return pa, pc, pq


def is_columnar(path: str | Path) -> bool:
    """True for a columnar scenario path (``*.parquet``, or a folder holding ``mus.parquet``)."""
    path = Path(path)
    return path.suffix == ".parquet" or (path.is_dir() and (path / MU_FILE).exists())


@dataclass(frozen=True)
class ColumnarScenario:
    """A validated scenario held as columns.

    ``asp_float`` / ``mu_float`` map the float fields of the rules to numpy arrays (NaN where
    an optional value is absent); names and the serving-ASP index come separately.
    """

    market: MarketConfig
    """The ``[market]`` table."""
    asp_names: tuple
    """(N,) ASP names."""
    asp_models: list
    """(N,) the optional ``model`` names (None where absent)."""
    asp_float: dict
    """Float ASP columns, (N,) each."""
    mu_names: Any
    """(M,) MU names (numpy array of str objects)."""
    mu_asp: np.ndarray
    """(M,) index of the serving ASP; -1 for ``"auto"``."""
    mu_float: dict
    """Float MU columns, (M,) each."""
    extra_tables: dict = field(default_factory=dict)
    """Pass-through tables (``provisioning``, ``backend``)."""
    file: str = "<memory>"
    """Where it came from."""

    @property
    def n_mus(self) -> int:
        return len(self.mu_names)

    def to_market(self) -> Market:
        """The numpy market (resolves ``"auto"``)."""
        return Market.from_columns(self.market, self.asp_names, self.mu_names, self.mu_asp,
                                   self.asp_float, self.mu_float)

    def to_scenario(self) -> Scenario:
        """The same scenario as objects (for TOML; O(M) Python objects, meant for small markets)."""
        def opt(v):
            return None if np.isnan(v) else float(v)

        asps = tuple(ASPSpec(name=n, model=self.asp_models[i],
                             **{k: float(v[i]) for k, v in self.asp_float.items()})
                     for i, n in enumerate(self.asp_names))
        cols = {k: v.tolist() for k, v in self.mu_float.items()}
        mus = []
        for i, name in enumerate(self.mu_names):
            a = int(self.mu_asp[i])
            mus.append(MUSpec(
                name=str(name), asp="auto" if a < 0 else self.asp_names[a],
                weights=QoEWeights(cols["weights.accuracy"][i], cols["weights.tokens"][i],
                                   cols["weights.timeliness"][i]),
                tokens_requested=cols["tokens_requested"][i], deadline_s=cols["deadline_s"][i],
                payload_bits=cols["payload_bits"][i], value_per_qoe=cols["value_per_qoe"][i],
                reward_min=cols["reward_min"][i], reward_max=cols["reward_max"][i],
                spectral_efficiency=opt(cols["spectral_efficiency"][i]), distance_m=opt(cols["distance_m"][i]),
                qoe_required=opt(cols["qoe_required"][i])))
        return Scenario(market=self.market, asps=asps, mus=tuple(mus), extra_tables=dict(self.extra_tables),
                        file=self.file)

    @classmethod
    def from_scenario(cls, scn: Scenario) -> "ColumnarScenario":
        """Columns of an object scenario (TOML -> Parquet)."""
        nan = float("nan")
        asp_float = {r.field: np.array([getattr(a, r.field) for a in scn.asps], dtype=float)
                     for r in ASP_RULES if r.kind == "float"}
        mu_float = {}
        for r in MU_RULES:
            if r.kind != "float":
                continue
            if r.field.startswith("weights."):
                mu_float[r.field] = np.array([getattr(m.weights, r.field[8:]) for m in scn.mus], dtype=float)
            else:
                mu_float[r.field] = np.array([nan if getattr(m, r.field) is None else getattr(m, r.field)
                                              for m in scn.mus], dtype=float)
        index = scn.asp_index()
        mu_asp = np.array([-1 if m.asp == "auto" else index[m.asp] for m in scn.mus], dtype=np.intp)
        return cls(market=scn.market, asp_names=tuple(a.name for a in scn.asps),
                   asp_models=[a.model for a in scn.asps], asp_float=asp_float,
                   mu_names=np.array([m.name for m in scn.mus], dtype=object), mu_asp=mu_asp, mu_float=mu_float,
                   extra_tables=dict(scn.extra_tables), file=scn.file)


# ============================================================================ reading
def _metadata(schema, file: str) -> dict:
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    if meta.get("aigc.format") != FORMAT_NAME:
        raise ScenarioError(f"not a columnar scenario (schema metadata 'aigc.format' is not {FORMAT_NAME!r})",
                            file=file, field="aigc.format")
    try:
        version = int(meta.get("aigc.version", ""))
    except ValueError:
        raise ScenarioError("schema metadata 'aigc.version' must be an integer", file=file,
                            field="aigc.version") from None
    if version != COLUMNAR_VERSION:
        raise ScenarioError(f"unsupported columnar format version {version} (this code reads {COLUMNAR_VERSION})",
                            file=file, field="aigc.version")
    return meta


def _read(path: Path, columns=None, filters=None):
    _, _, pq = _pyarrow()
    try:
        return pq.read_table(path, columns=columns, filters=filters)
    except FileNotFoundError:
        raise ScenarioError("file not found", file=path) from None
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for a broken file
        raise ScenarioError(f"not a readable Parquet file ({type(exc).__name__}: {exc})", file=path) from None


def _string_column(table, rule, table_name: str, file: str):
    """A validated string column as a pyarrow array (None when optional and absent)."""
    pa, pc, _ = _pyarrow()
    if rule.field not in table.column_names:
        if rule.default is not ...:
            return None
        raise ScenarioError("missing required field (column)", file=file, field=f"{table_name}.{rule.field}")
    col = table.column(rule.field)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise ScenarioError(f"must be a string, got a column of {col.type}", file=file,
                            field=f"{table_name}.{rule.field}")
    if rule.default is ... and col.null_count:
        row = int(pc.index(pc.is_null(col), True).as_py())
        raise ScenarioError("missing required field", file=file, field=f"{table_name}[{row}].{rule.field}")
    if not rule.allow_empty:
        empty = pc.equal(pc.utf8_trim_whitespace(col), "")
        if pc.any(empty).as_py():
            row = int(pc.index(empty, True).as_py())
            raise ScenarioError("must not be empty", file=file, field=f"{table_name}[{row}].{rule.field}")
    return col


def _float_columns(table, rules, table_name: str, file: str) -> dict[str, np.ndarray]:
    """Float columns as numpy (NaN where absent), after the type, presence and range rules;
    a range error is reported for the first bad row (then the first field in rule order)."""
    pa, pc, _ = _pyarrow()
    out, first = {}, None
    for order, rule in enumerate(r for r in rules if r.kind == "float"):
        where = f"{table_name}.{rule.field}"
        if rule.field not in table.column_names:
            if rule.default is ...:
                raise ScenarioError("missing required field (column)", file=file, field=where)
            default = np.nan if rule.default is None else float(rule.default)
            out[rule.field] = np.full(table.num_rows, default)
            continue
        col = table.column(rule.field)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise ScenarioError(f"must be a number, got a column of {col.type}", file=file, field=where)
        present = ~np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool) if col.null_count \
            else np.ones(table.num_rows, bool)
        values = np.asarray(pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(), dtype=float) \
            if col.null_count else np.asarray(pc.cast(col, pa.float64()).to_numpy(), dtype=float)
        if rule.default is ... and not present.all():
            first = min(first or (np.inf,), (int(np.argmin(present)), order, rule, "missing required field"))
        bad = np.flatnonzero(rule.bad_rows(values) & present)
        if bad.size:
            first = min(first or (np.inf,), (int(bad[0]), order, rule, values[bad[0]]))
        if rule.default is not None and rule.default is not ...:
            values = np.where(present, values, float(rule.default))
        out[rule.field] = values
    if first is not None:
        row, _, rule, what = first
        message = what if isinstance(what, str) else rule.range_message(float(what))
        raise ScenarioError(message, file=file, field=f"{table_name}[{row}].{rule.field}")
    return out


def _unknown_columns(table, rules, table_name: str, file: str) -> None:
    known = {r.field for r in rules}
    for name in table.column_names:
        if name not in known:
            raise ScenarioError("unknown field (column)", file=file, field=f"{table_name}.{name}")
    if table.num_rows == 0:
        raise ScenarioError(f"needs at least one row ([[{table_name}]] entry)", file=file, field=table_name)


def _first_duplicate(names, table_name: str, file: str) -> None:
    _, pc, _ = _pyarrow()
    if pc.count_distinct(names).as_py() == len(names):
        return
    seen: dict[str, int] = {}
    for i, name in enumerate(names.to_pylist()):
        if name in seen:
            raise ScenarioError(f"duplicate name {name!r} (also {table_name}[{seen[name]}])", file=file,
                                field=f"{table_name}[{i}].name")
        seen[name] = i


def _folder(path: Path) -> tuple[Path, Path]:
    return path / ASP_FILE, path / MU_FILE


def plan_columnar_shards(path: str | Path) -> tuple[tuple, np.ndarray]:
    """(ASP names, (M,) serving-ASP index per MU row), reading only the ``asp`` column
    (dictionary-encoded: a few bytes per row). ``"auto"`` is refused: sharding by ASP needs
    the association fixed in the file."""
    pa, pc, _ = _pyarrow()
    path = Path(path)
    if not (path / MU_FILE).exists():
        raise ScenarioError(f"a columnar scenario is a folder holding {ASP_FILE} and {MU_FILE}", file=path)
    names = _read(path / ASP_FILE, columns=["name"]).column("name")
    _first_duplicate(names, "asp", str(path / ASP_FILE))
    asp_names = tuple(names.to_pylist())
    asp_col = _read(path / MU_FILE, columns=["asp"]).column("asp")
    index = pc.index_in(asp_col, value_set=pa.array(asp_names))
    if index.null_count:
        row = int(pc.index(pc.is_null(index), True).as_py())
        value = asp_col[row].as_py()
        message = ("is \"auto\": a sharded solve needs every MU's ASP fixed in the file" if value == "auto"
                   else unknown_asp_message(value, asp_names))
        raise ScenarioError(message, file=path / MU_FILE, field=f"mu[{row}].asp")
    return asp_names, np.asarray(index.to_numpy(), dtype=np.intp)


def load_columnar_shard(path: str | Path, asp_names, rows: np.ndarray) -> ColumnarScenario:
    """The MUs of the ASPs ``asp_names`` only (Parquet filter on ``asp``: row groups of other
    ASPs are skipped), validated with the same rules; ``rows`` are their global row numbers,
    used in error messages."""
    import re

    pa, pc, _ = _pyarrow()
    path = Path(path)
    asp_path, mu_path = _folder(path)
    wanted = pa.array(list(asp_names), pa.string())
    try:
        asp_table = _read(asp_path)
        meta = _metadata(asp_table.schema, str(asp_path))
        market = parse_market_table(json.loads(meta.get("aigc.market", "")), str(asp_path))
        keep = pc.is_in(asp_table.column("name"), value_set=wanted)
        asp_rows = np.flatnonzero(np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool))
        asp_table = asp_table.filter(keep)
        mu_table = _read(mu_path, filters=[("asp", "in", list(asp_names))])
        cs = _validated(market, asp_table, mu_table, str(asp_path), str(mu_path), {}, str(path))
    except ScenarioError as exc:  # shard-local row numbers -> the file's row numbers
        table, global_rows = ("mu", rows) if exc.file == str(mu_path) else ("asp", asp_rows)
        if exc.field and exc.field.startswith(f"{table}["):
            exc = ScenarioError(exc.message, file=exc.file, field=re.sub(
                rf"^{table}\[(\d+)\]", lambda g: f"{table}[{int(global_rows[int(g.group(1))])}]", exc.field))
        raise exc from None
    return cs


def load_columnar(path: str | Path) -> ColumnarScenario:
    """Read and validate a columnar scenario folder (``NAME.parquet/``).

    Raises
    ------
    ScenarioError
        Naming the file (``.../mus.parquet``) and the field (``mu[7].reward_max``).
    """
    path = Path(path)
    if not path.exists():
        raise ScenarioError("file not found", file=path)
    if not path.is_dir():
        raise ScenarioError(f"a columnar scenario is a folder holding {ASP_FILE} and {MU_FILE}", file=path)
    asp_path, mu_path = _folder(path)
    asp_table = _read(asp_path)
    meta = _metadata(asp_table.schema, str(asp_path))
    try:
        market_doc = json.loads(meta.get("aigc.market", ""))
        extra = json.loads(meta.get("aigc.extra_tables", "{}"))
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"schema metadata is not valid JSON ({exc})", file=asp_path, field="aigc.market") from None
    market = parse_market_table(market_doc, str(asp_path))
    return _validated(market, asp_table, _read(mu_path), str(asp_path), str(mu_path), extra, str(path))


def _validated(market, asp_table, mu_table, file_a: str, file_m: str, extra: dict, file: str) -> ColumnarScenario:
    """Validate the two tables column-wise and build the :class:`ColumnarScenario`."""
    pa, pc, _ = _pyarrow()
    _unknown_columns(asp_table, ASP_RULES, "asp", file_a)
    asp_names_col = _string_column(asp_table, next(r for r in ASP_RULES if r.field == "name"), "asp", file_a)
    models = _string_column(asp_table, next(r for r in ASP_RULES if r.field == "model"), "asp", file_a)
    asp_float = _float_columns(asp_table, ASP_RULES, "asp", file_a)
    _first_duplicate(asp_names_col, "asp", file_a)
    asp_names = tuple(asp_names_col.to_pylist())
    _metadata(mu_table.schema, file_m)
    _unknown_columns(mu_table, MU_RULES, "mu", file_m)
    names = _string_column(mu_table, MU_RULES[0], "mu", file_m)
    asp_col = _string_column(mu_table, MU_RULES[1], "mu", file_m)
    mu_float = _float_columns(mu_table, MU_RULES, "mu", file_m)
    index = pc.index_in(asp_col, value_set=pa.array(asp_names, pa.string()))
    auto = np.asarray(pc.equal(asp_col, "auto").to_numpy(zero_copy_only=False), dtype=bool)
    mu_asp = np.asarray(pc.fill_null(index, -1).to_numpy(), dtype=np.intp)
    known = (mu_asp >= 0) | auto
    mu_asp = np.where(auto, -1, mu_asp)
    raise_first_cross_error(mu_cross_field_errors(mu_float, known), file_m, "mu",
                            lambda row: unknown_asp_message(asp_col[row].as_py(), asp_names))
    _first_duplicate(names, "mu", file_m)
    check_columns(market, asp_float, mu_float, mu_asp, asp_file=file_a, mu_file=file_m)  # physical ranges
    return ColumnarScenario(market=market, asp_names=asp_names,
                            asp_models=models.to_pylist() if models is not None else [None] * len(asp_names),
                            asp_float=asp_float, mu_names=names.to_numpy(zero_copy_only=False), mu_asp=mu_asp,
                            mu_float=mu_float, extra_tables=extra, file=file)


# ============================================================================ writing
def _schema_metadata(cs: ColumnarScenario) -> dict:
    return {"aigc.format": FORMAT_NAME, "aigc.version": str(COLUMNAR_VERSION),
            "aigc.market": json.dumps(market_table(cs.market)), "aigc.extra_tables": json.dumps(cs.extra_tables)}


def _float_array(pa, values: np.ndarray):
    values = np.asarray(values, dtype=float)
    missing = np.isnan(values)
    return pa.array(values, mask=missing) if missing.any() else pa.array(values)


def write_columnar(cs: ColumnarScenario, path: str | Path) -> Path:
    """Write a columnar scenario folder; it appears whole or not at all (staged, renamed).

    MUs are written in their order; ``row_group_size`` :data:`ROW_GROUP_ROWS` so that a
    reader filtering by ASP skips row groups (most when the MUs are grouped by ASP, as
    :func:`market.generator.generate_columnar` writes them).
    """
    pa, _, pq = _pyarrow()
    path = Path(path)
    meta = _schema_metadata(cs)
    asp_cols = {"name": pa.array(list(cs.asp_names), pa.string())}
    if any(m is not None for m in cs.asp_models):
        asp_cols["model"] = pa.array(cs.asp_models, pa.string())
    asp_cols.update({k: _float_array(pa, v) for k, v in cs.asp_float.items()})
    asp_table = pa.table(asp_cols).replace_schema_metadata(meta)
    asp_of_mu = pa.array(list(cs.asp_names) + ["auto"], pa.string()).take(
        pa.array(np.where(cs.mu_asp < 0, len(cs.asp_names), cs.mu_asp)))
    mu_cols = {"name": pa.array(cs.mu_names, pa.string()), "asp": asp_of_mu}
    for rule in MU_RULES:
        if rule.kind == "float":
            values = cs.mu_float[rule.field]
            if rule.default is None and np.isnan(values).all():
                continue  # an optional column nobody uses is left out
            mu_cols[rule.field] = _float_array(pa, values)
    mu_table = pa.table(mu_cols).replace_schema_metadata(meta)
    with _staged_folder(path) as stage:
        pq.write_table(asp_table, stage / ASP_FILE)
        pq.write_table(mu_table, stage / MU_FILE, row_group_size=ROW_GROUP_ROWS)
    return path


class _staged_folder:
    """Write into a hidden sibling folder; rename it into place on success (refuses to
    replace an existing path: nothing a user has is overwritten)."""

    def __init__(self, target: Path):
        self.target = target

    def __enter__(self) -> Path:
        if self.target.exists():
            raise UserError(f"{self.target} exists; remove it or choose another name (nothing is overwritten)")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.partial-", dir=self.target.parent))
        return self.stage

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            return
        os.replace(self.stage, self.target)


def write_result_tables(folder: str | Path, mu_columns: dict, asp_columns: dict, metadata: dict | None = None,
                        *, part: int | None = None) -> None:
    """Write the per-MU and per-ASP result columns (numpy arrays or lists of str) as Parquet
    into ``folder`` (an existing staging folder); non-finite numbers become nulls. With
    ``part`` (a shard), they go to ``mus/part-K.parquet`` and ``asps/part-K.parquet``: one
    Parquet dataset per table, which ``pyarrow.parquet.read_table(folder / "mus")`` reads whole."""
    pa, _, pq = _pyarrow()
    meta = {"aigc.format": "aigc-result-columnar", "aigc.version": str(COLUMNAR_VERSION),
            **{k: json.dumps(v) for k, v in (metadata or {}).items()}}

    def column(values):
        arr = np.asarray(values)
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr)
            return pa.array(arr, mask=bad) if bad.any() else pa.array(arr)
        return pa.array(arr if arr.dtype.kind != "O" else list(values), pa.string())

    folder = Path(folder)
    for name, cols in ((MU_FILE, mu_columns), (ASP_FILE, asp_columns)):
        table = pa.table({k: column(v) for k, v in cols.items()}).replace_schema_metadata(meta)
        target = folder / name
        if part is not None:
            target = folder / name.split(".")[0] / f"part-{part:05d}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target, row_group_size=ROW_GROUP_ROWS)


def read_result_tables(folder: str | Path) -> tuple[dict, dict]:
    """The per-MU and per-ASP result columns of a columnar result folder, as numpy arrays."""
    _, _, pq = _pyarrow()
    folder = Path(folder)
    out = []
    for name in (MU_FILE, ASP_FILE):
        table = pq.read_table(folder / name)
        out.append({c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names})
    return out[0], out[1]
