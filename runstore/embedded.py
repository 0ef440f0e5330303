"""Launcher of the embedded store: nx-27017, fixed to answer like MongoDB where the Sacred ecosystem looks.

``runstore.server`` starts the embedded server as ``python -c "...runstore.embedded.main()" <nx-27017
arguments>``: this module checks that the installed nx-27017 and neosqlite are the versions its
fixes were written and tested against, patches them in this process, then runs nx-27017's own
``main``. What it fixes (each with MongoDB's documented semantics; tests/test_store_semantics.py):

1. **Handshake.** nx-27017 reports ``minWireVersion: 17``; real MongoDB servers report 0, and older
   drivers (Omniboard 2.16.1's Node driver 3.x accepts at most 13) refuse anything higher. The
   ``hello``/``isMaster`` reply says 0 and, for the legacy ``isMaster``, ``ismaster: true``.
2. **Sort order.** neosqlite keeps ``_id`` in a TEXT column and sorts by it (``1, 10, 11, 2``), and
   sorts other fields by their raw JSON value. ``ORDER BY`` now uses a key in BSON comparison order
   (null/missing < numbers < strings < objects < arrays < binary < ObjectId < booleans < dates),
   numbers compared numerically, for ``find``, ``find_one_and_*`` and ``findAndModify``. The
   Python-side sort key (``$sort`` in aggregations, comparisons in expressions) follows the same
   order (it put ObjectId and binary data after dates).
3. **Aggregations.** neosqlite runs a pipeline in one of three engines; the two SQL ones return
   ``_id`` as text after ``$project``, ignore a ``$project`` after ``$limit`` and sort ``_id`` as
   text, and every engine evaluates date arithmetic wrongly (``$subtract`` of two dates gave 0).
   Every pipeline now runs in the Python engine (a leading ``$match`` still selects in SQL), whose
   ``$add``/``$subtract`` follow MongoDB: date − date → milliseconds (an integer), date ± number of
   milliseconds → date, null/missing → null, anything else with a date → an error. ``$expr`` in a
   ``find`` filter is evaluated by the same Python evaluator.
4. **Projections.** ``{"a.b": 1}`` returns ``{"a": {"b": ...}}`` (nx-27017 returned the flat key
   ``"a.b"``) and ``{"a.b": 0}`` removes the nested field (it was ignored), in ``find`` and
   ``$project``; only the kept fields are copied (neosqlite deep-copied every whole document).
5. **Types in updates.** A date or ObjectId written with ``$set`` (Sacred's own MongoObserver writes
   ``heartbeat``, ``start_time`` and ``stop_time`` that way) was stored as text; it keeps its type.

Known gaps that remain are listed in docs/tracking.md ("Notes on the embedded store").
"""
from __future__ import annotations

import copy
import datetime as dt
import decimal
import math
import os
import sys
from importlib import metadata

# The versions every fix below was written against and tested with (tests/test_store_semantics.py,
# tests/interop/). The patches reach into neosqlite's internals, so another version is refused.
TESTED_VERSIONS = {"nx-27017": ("0.8.1",), "neosqlite": ("1.17.2",)}
ALLOW_UNTESTED_ENV = "HARNESS_EMBEDDED_ALLOW_UNTESTED"
# Written into the store's state file: a server started by an older harness lacks these fixes.
LAUNCHER = "runstore.embedded/1"

_applied = False


class UntestedVersionError(RuntimeError):
    """The installed nx-27017 or neosqlite is not a version the embedded-store fixes were tested with."""


def installed_versions() -> dict:
    found = {}
    for name in TESTED_VERSIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def check_versions() -> dict:
    """The installed versions; raises UntestedVersionError naming any untested one.

    ``HARNESS_EMBEDDED_ALLOW_UNTESTED=1`` turns the error into a warning on stderr (at your own risk:
    a patch may then fail to apply, or apply and misbehave).
    """
    found = installed_versions()
    bad = [f"{name} {found[name] or '(not installed)'} (tested: {', '.join(ok)})"
           for name, ok in TESTED_VERSIONS.items() if found[name] not in ok]
    if bad:
        message = (f"the embedded store's MongoDB-compatibility fixes (runstore/embedded.py) are tested "
                   f"only with other versions: {'; '.join(bad)}. Install the tested versions "
                   f"(pip install {' '.join(f'{n}=={v[-1]}' for n, v in TESTED_VERSIONS.items())}), "
                   f"point HARNESS_MONGO_URL at a real MongoDB, or set {ALLOW_UNTESTED_ENV}=1 to try anyway.")
        if os.environ.get(ALLOW_UNTESTED_ENV, "") in ("", "0", "false"):
            raise UntestedVersionError(message)
        print(f"warning: {message}", file=sys.stderr)
    return found


# --------------------------------------------------------------------------------------------
# BSON comparison order (https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/)

RANK_NULL, RANK_NUMBER, RANK_STRING, RANK_OBJECT, RANK_ARRAY = 1, 2, 3, 4, 5
RANK_BINARY, RANK_OBJECTID, RANK_BOOL, RANK_DATE, RANK_TIMESTAMP, RANK_REGEX = 6, 7, 8, 9, 10, 11
RANK_MINKEY, RANK_MAXKEY = 0, 12


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def bson_sort_key(value) -> tuple:
    """A key that orders any values as MongoDB does: by BSON type class, then by value.

    Missing and null sort first; int, float, Int64 and Decimal128 compare numerically (NaN below every
    number); strings by code point (= UTF-8 byte order); objects field by field (type, name, value);
    arrays element by element; binary by length, subtype, bytes; ObjectIds by bytes; false < true;
    dates by instant (naive values are UTC).
    """
    if value is None:
        return (RANK_NULL,)
    name = type(value).__name__
    if isinstance(value, bool):
        return (RANK_BOOL, value)
    if isinstance(value, (int, float)):
        return (RANK_NUMBER, 0) if isinstance(value, float) and math.isnan(value) else (RANK_NUMBER, 1, value)
    if name == "Decimal128":
        number = value.to_decimal()
        return (RANK_NUMBER, 0) if number.is_nan() else (RANK_NUMBER, 1, number)
    if isinstance(value, decimal.Decimal):
        return (RANK_NUMBER, 0) if value.is_nan() else (RANK_NUMBER, 1, value)
    if isinstance(value, str):
        return (RANK_STRING, value)
    if isinstance(value, dict):
        return (RANK_OBJECT, tuple((bson_sort_key(v)[0], str(k), bson_sort_key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (RANK_ARRAY, tuple(bson_sort_key(v) for v in value))
    if isinstance(value, dt.datetime):
        return (RANK_DATE, _naive_utc(value))
    if name == "ObjectId":
        raw = getattr(value, "binary", None)
        return (RANK_OBJECTID, raw if isinstance(raw, bytes) else bytes.fromhex(str(value)))
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        return (RANK_BINARY, len(data), getattr(value, "subtype", 0), data)
    if name == "Timestamp":
        return (RANK_TIMESTAMP, getattr(value, "time", 0), getattr(value, "inc", 0))
    if name in ("Regex", "Pattern"):
        return (RANK_REGEX, str(getattr(value, "pattern", value)), str(getattr(value, "flags", "")))
    if name == "MinKey":
        return (RANK_MINKEY,)
    if name == "MaxKey":
        return (RANK_MAXKEY,)
    return (RANK_MAXKEY + 1, name, repr(value))


def sql_sort_terms(path: str, direction: int, json_prefix: str = "json", collate: str = "") -> list[str]:
    """ORDER BY terms that sort the JSON value at ``path`` of the ``data`` column in BSON order.

    How neosqlite stores values: numbers, strings, booleans, objects and arrays as JSON; dates as
    ``{"$date": "<ISO 8601>"}``; ObjectIds as ``{"__neosqlite_objectid__": true, "id": "<hex>"}``;
    binary as ``{"__neosqlite_binary__": ...}``. A missing path sorts as null.
    """
    p = path.replace("'", "''")
    kind = f"json_type(data, '{p}')"
    rank = (f"CASE {kind} WHEN 'null' THEN {RANK_NULL} WHEN 'integer' THEN {RANK_NUMBER} "
            f"WHEN 'real' THEN {RANK_NUMBER} WHEN 'text' THEN {RANK_STRING} WHEN 'array' THEN {RANK_ARRAY} "
            f"WHEN 'true' THEN {RANK_BOOL} WHEN 'false' THEN {RANK_BOOL} "
            f"WHEN 'object' THEN CASE "
            f"WHEN json_type(data, '{p}.__neosqlite_objectid__') IS NOT NULL THEN {RANK_OBJECTID} "
            f"WHEN json_type(data, '{p}.__neosqlite_binary__') IS NOT NULL THEN {RANK_BINARY} "
            f"WHEN json_type(data, '{p}.$date') IS NOT NULL THEN {RANK_DATE} "
            f"ELSE {RANK_OBJECT} END "
            f"ELSE {RANK_NULL} END")
    # ObjectIds: the hex string ('id') orders like the bytes; dates: the ISO text orders like the instant.
    value = (f"CASE WHEN json_type(data, '{p}.__neosqlite_objectid__') IS NOT NULL "
             f"THEN {json_prefix}_extract(data, '{p}.id') "
             f"WHEN json_type(data, '{p}.$date') IS NOT NULL THEN {json_prefix}_extract(data, '{p}.$date') "
             f"ELSE {json_prefix}_extract(data, '{p}') END")
    order = "DESC" if direction == -1 else "ASC"
    return [f"{rank} {order}", f"{value}{collate} {order}"]


def sql_id_sort_terms(direction: int, table: str, json_prefix: str = "json", collate: str = "") -> list[str]:
    """ORDER BY terms for ``_id``: ``sql_sort_terms`` with a fast path that parses no JSON.

    neosqlite writes a document as ``{"_id": <value>, ...}`` and keeps ``str(value)`` in the ``_id``
    column, so the character after ``{"_id": `` tells a number, string, boolean or null apart and the
    column gives the value (numbers cast back). Objects (ObjectId, dates) and documents written
    otherwise take the JSON path. Over 1,000 runs, in SQLite: 1.4 ms instead of 8.4 ms (the text
    index that gave the wrong order took 0.01 ms).
    """
    column = f"{table}._id"
    head = "substr(data, 1, 8) = '{\"_id\": '"
    first = "substr(data, 9, 1)"
    number, text = f"{head} AND {first} GLOB '[-0-9]'", f"{head} AND {first} = '\"'"
    boolean, null = f"{head} AND {first} IN ('t', 'f')", f"{head} AND {first} = 'n'"
    slow_rank, slow_value = (t.rsplit(" ", 1)[0] for t in sql_sort_terms("$._id", direction, json_prefix))
    rank = (f"CASE WHEN {number} THEN {RANK_NUMBER} WHEN {text} THEN {RANK_STRING} "
            f"WHEN {boolean} THEN {RANK_BOOL} WHEN {null} THEN {RANK_NULL} ELSE {slow_rank} END")
    value = (f"CASE WHEN {number} THEN CAST({column} AS NUMERIC) WHEN {text} OR {boolean} THEN {column} "
             f"WHEN {null} THEN NULL ELSE {slow_value} END")
    order = "DESC" if direction == -1 else "ASC"
    return [f"{rank} {order}", f"{value}{collate} {order}"]


# --------------------------------------------------------------------------------------------
# date arithmetic ($add, $subtract)

_MS = dt.timedelta(milliseconds=1)


class ExpressionError(ValueError):
    """An aggregation expression MongoDB would refuse (the server answers ok: 0 with this message)."""


def _is_number(v) -> bool:
    return (isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)) or \
        type(v).__name__ == "Decimal128"


def _num(v):
    return v.to_decimal() if type(v).__name__ == "Decimal128" else v


def _ms(n) -> dt.timedelta:
    # MongoDB rounds a fractional millisecond count to the nearest millisecond
    return dt.timedelta(milliseconds=int(round(float(n))))


def arithmetic(operator: str, values: list):
    """``$add`` / ``$subtract`` over evaluated operands, with MongoDB's date semantics.

    $subtract: number − number → number; date − date → milliseconds (int); date − number → date.
    $add: numbers → their sum; numbers and one date → date (numbers are milliseconds).
    null or missing anywhere → null.
    """
    if any(v is None for v in values):
        return None
    if operator == "$subtract":
        if len(values) != 2:
            raise ExpressionError(f"Expression $subtract takes exactly 2 arguments. "
                                  f"{len(values)} were passed in.")
        a, b = values
        if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
            return (_naive_utc(a) - _naive_utc(b)) // _MS
        if isinstance(a, dt.datetime) and _is_number(b):
            return a - _ms(_num(b))
        if _is_number(a) and _is_number(b):
            return _num(a) - _num(b)
        raise ExpressionError(f"can't $subtract {type(b).__name__} from {type(a).__name__}")
    dates = [v for v in values if isinstance(v, dt.datetime)]
    if len(dates) > 1:
        raise ExpressionError("only one date allowed in an $add expression")
    others = [v for v in values if not isinstance(v, dt.datetime)]
    if any(not _is_number(v) for v in others):
        bad = next(v for v in others if not _is_number(v))
        raise ExpressionError(f"$add only supports numeric or date types, not {type(bad).__name__}")
    total = sum(_num(v) for v in others)
    return dates[0] + _ms(total) if dates else total


# --------------------------------------------------------------------------------------------
# the patches


def _patch_handshake() -> None:
    from nx_27017 import handler, wire_protocol

    handler.MIN_WIRE_VERSION = 0
    wire_protocol.MIN_WIRE_VERSION = 0
    original = handler.NeoSQLiteHandler.handle_command

    def handle_command(self, msg):
        request_id, reply = original(self, msg)
        body = next((doc for kind, doc in msg.get("sections", ()) if kind == "body"), None)
        if isinstance(body, dict) and isinstance(reply, dict) and "minWireVersion" in reply and \
                any(k in body for k in ("hello", "Hello", "isMaster", "ismaster")):
            reply = dict(reply, minWireVersion=0)
            if "hello" not in body and "Hello" not in body:
                reply["ismaster"] = True  # the legacy command's field (drivers before hello read it)
            else:
                reply["helloOk"] = True
        return request_id, reply

    handle_command.__wrapped__ = original
    handler.NeoSQLiteHandler.handle_command = handle_command


def _patch_sort() -> None:
    from neosqlite.collection import type_utils
    from neosqlite.collection.json_path_utils import parse_json_path
    from neosqlite.collection.query_helper import QueryHelper
    from neosqlite.sql_utils import quote_table_name

    def _build_sort_clause(self, sort, collation=None):
        if not sort:
            return ""
        collate = ""
        if collation and (collation.get("strength", 3) <= 2 or not collation.get("caseLevel", False)):
            collate = " COLLATE NOCASE"
        prefix = self.jsonb.json_function_prefix
        terms = []
        for field, direction in sort.items():
            if isinstance(direction, dict):  # {"$meta": "textScore"}: neosqlite's own handling
                return _original_sort_clause(self, sort, collation)
            order = -1 if direction in (-1, "desc", "descending") else 1
            if field == "_id":
                terms += sql_id_sort_terms(order, quote_table_name(self.collection.name), prefix, collate)
            else:
                terms += sql_sort_terms(parse_json_path(field), order, prefix, collate)
        return " ORDER BY " + ", ".join(terms)

    _original_sort_clause = QueryHelper._build_sort_clause
    QueryHelper._build_sort_clause = _build_sort_clause

    # every module that bound neosqlite's Python sort key at import time
    original_key = type_utils.bson_sort_key
    for name, module in list(sys.modules.items()):
        if name.startswith("neosqlite") and getattr(module, "bson_sort_key", None) is original_key:
            module.bson_sort_key = bson_sort_key


def _patch_aggregation() -> None:
    from neosqlite.collection import cursor as cursor_module
    from neosqlite.collection.expr_evaluator import ExprEvaluator
    from neosqlite.collection.query_engine import QueryEngine, python_aggregation_engine
    from neosqlite.collection.query_helper import QueryHelper

    original_arithmetic = ExprEvaluator._evaluate_arithmetic_python

    def _evaluate_arithmetic_python(self, operator, operands, document):
        if operator not in ("$add", "$subtract"):
            return original_arithmetic(self, operator, operands, document)
        if not isinstance(operands, list):
            operands = [operands]
        return arithmetic(operator, [self._evaluate_operand_python(op, document) for op in operands])

    ExprEvaluator._evaluate_arithmetic_python = _evaluate_arithmetic_python

    class _Prefiltered:
        """The query engine, except that ``find()`` applies the pipeline's leading ``$match`` (in SQL)
        and leading plain ``$project`` (so the Python engine copies only the fields the pipeline keeps)."""

        def __init__(self, engine, query, projection):
            self._engine, self._query, self._projection = engine, query, projection

        def find(self, filter=None, projection=None, hint=None, session=None):
            return self._engine.find(self._query, self._projection, session=session)

        def __getattr__(self, name):
            return getattr(self._engine, name)

    def aggregate_with_constraints(self, pipeline, batch_size=101, memory_constrained=False, session=None):
        pipeline = list(pipeline)
        query = projection = None
        if pipeline and _stage(pipeline[0], "$match"):
            query = pipeline.pop(0)["$match"]
        if pipeline and _stage(pipeline[0], "$project") and _plain_inclusion(pipeline[0]["$project"]):
            projection = dict(pipeline[0]["$project"])  # the stage stays: it also orders the fields
        engine = self if query is None and projection is None else _Prefiltered(self, query or {}, projection)
        return python_aggregation_engine.execute_python_aggregation(engine, pipeline, session)

    QueryEngine.aggregate_with_constraints = aggregate_with_constraints
    # The Python engine deep-copies every document twice ($$ROOT, $project): copy.deepcopy was 80 %
    # of Omniboard's run-table aggregation; documents hold only dicts, lists and immutable values.
    from neosqlite.collection.query_helper import aggregation as aggregation_helpers

    python_aggregation_engine.deepcopy = copy_document
    aggregation_helpers.deepcopy = copy_document

    # Projections of field paths (find's projection, $project), MongoDB's way
    original_projection = QueryHelper._apply_projection

    def _apply_projection(self, projection, document):
        if not projection or not isinstance(document, dict):
            return original_projection(self, projection, document)
        projected = project(document, projection)
        if projected is None:
            return _nest_dotted(original_projection(self, projection, document))
        return projected

    QueryHelper._apply_projection = _apply_projection

    # find({"$expr": ...}): always the Python evaluator (its SQL translation gets dates wrong too)
    QueryHelper._build_expr_where_clause = lambda self, query: None
    if not hasattr(cursor_module.Cursor, "_handle_expr_query"):
        raise UntestedVersionError("neosqlite's Cursor has no _handle_expr_query")


def _patch_set_types() -> None:
    import json

    from neosqlite.collection.json_helpers import neosqlite_json_dumps
    from neosqlite.collection.query_helper import _sql_updates

    original = _sql_updates._convert_bytes_to_binary

    def _convert(value):
        value = original(value)
        # a scalar date or ObjectId went to SQLite as a bare parameter, i.e. as text; as the JSON
        # object neosqlite stores it in inserted documents ({"$date": ...}) it keeps its type
        if isinstance(value, dt.datetime) or type(value).__name__ == "ObjectId":
            return json.loads(neosqlite_json_dumps(value))
        return value

    _sql_updates._convert_bytes_to_binary = _convert


_IMMUTABLE = (str, int, float, bool, type(None), bytes, dt.datetime, dt.date, decimal.Decimal)


def copy_document(value, memo=None):
    """``copy.deepcopy`` for decoded documents: dicts and lists rebuilt, immutable leaves shared.

    Anything else (an ObjectId, Binary, a user type) goes through ``copy.deepcopy``.
    """
    kind = type(value)
    if kind is dict:
        return {k: copy_document(v) for k, v in value.items()}
    if kind is list:
        return [copy_document(v) for v in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value, memo)


def _path_tree(paths) -> dict:
    tree: dict = {}
    for path in paths:
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if child is True:  # "a" and "a.b": the whole of "a"
                break
            node = child
        else:
            node[parts[-1]] = True
    return tree


def _include(doc: dict, tree: dict) -> dict:
    out = {}
    for key, value in doc.items():  # the document's field order, as MongoDB keeps it
        sub = tree.get(key)
        if sub is None:
            continue
        if sub is True:
            out[key] = copy_document(value)
        elif isinstance(value, dict):
            out[key] = _include(value, sub)
        elif isinstance(value, list):
            out[key] = _include_list(value, sub)
    return out


def _include_list(items: list, tree: dict) -> list:
    return [_include(v, tree) if isinstance(v, dict) else _include_list(v, tree)
            for v in items if isinstance(v, (dict, list))]


def _exclude(doc: dict, tree: dict) -> dict:
    out = {}
    for key, value in doc.items():
        sub = tree.get(key)
        if sub is True:
            continue
        if sub is None:
            out[key] = copy_document(value)
        elif isinstance(value, dict):
            out[key] = _exclude(value, sub)
        elif isinstance(value, list):
            out[key] = [_exclude(v, sub) if isinstance(v, dict) else copy_document(v) for v in value]
        else:
            out[key] = value
    return out


def project(document: dict, projection: dict) -> dict | None:
    """MongoDB's field projection (``{"a.b": 1}`` → ``{"_id": ..., "a": {"b": ...}}``; ``{"a.b": 0}``
    removes ``b`` from ``a``; through arrays of documents), or None for projections with expressions,
    ``$slice``/``$elemMatch`` or positional paths, which neosqlite handles.

    neosqlite returned an included path as one flat key (``{"a.b": ...}``) and ignored an excluded
    nested path.
    """
    fields = {k: v for k, v in projection.items() if k != "_id"}
    keep_id = projection.get("_id", 1) not in (0, False)
    if not all(isinstance(k, str) and "$" not in k and isinstance(v, (int, float))
               for k, v in fields.items()):
        return None
    included = [k for k, v in fields.items() if v]
    excluded = [k for k, v in fields.items() if not v]
    if included and excluded:
        return None  # MongoDB refuses the mix; leave the answer to neosqlite
    if not fields and keep_id:  # {"_id": 1}: the id alone
        return {"_id": document["_id"]} if "_id" in document else {}
    if included:
        out = _include(document, _path_tree(included))
        if keep_id and "_id" in document:
            out = {"_id": document["_id"], **out}
        return out
    tree = _path_tree(excluded)
    if not keep_id:
        tree["_id"] = True
    return _exclude(document, tree)


def _nest_dotted(doc: dict) -> dict:
    """``{"a.b": 1}`` → ``{"a": {"b": 1}}`` for the keys neosqlite's projection left flat."""
    if not any("." in k for k in doc):
        return doc
    out: dict = {}
    for key, value in doc.items():
        node, parts = out, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # a value already there: keep the key as it came
                out[key] = value
                break
        else:
            node[parts[-1]] = value
    return out


def _stage(stage, name: str) -> bool:
    return isinstance(stage, dict) and list(stage) == [name] and isinstance(stage[name], dict)


def _plain_inclusion(spec: dict) -> bool:
    """A ``$project`` that only keeps fields (``{"a": 1, "b.c": True}``, ``_id`` kept or dropped)."""
    fields = {k: v for k, v in spec.items() if k != "_id"}
    return bool(fields) and spec.get("_id", 1) in (0, 1, True, False) and all(
        isinstance(k, str) and not k.startswith("$") and v in (1, True) and not isinstance(v, float)
        for k, v in fields.items())


_TARGETS = [
    ("neosqlite.collection.query_helper._sql_updates", "_convert_bytes_to_binary"),
    ("nx_27017.handler", "NeoSQLiteHandler.handle_command"),
    ("nx_27017.handler", "MIN_WIRE_VERSION"),
    ("neosqlite.collection.query_helper", "QueryHelper._build_sort_clause"),
    ("neosqlite.collection.query_helper", "QueryHelper._build_expr_where_clause"),
    ("neosqlite.collection.query_helper", "QueryHelper._apply_projection"),
    ("neosqlite.collection.query_helper.aggregation", "deepcopy"),
    ("neosqlite.collection.query_engine.python_aggregation_engine", "deepcopy"),
    ("neosqlite.collection.type_utils", "bson_sort_key"),
    ("neosqlite.collection.expr_evaluator", "ExprEvaluator._evaluate_arithmetic_python"),
    ("neosqlite.collection.expr_evaluator", "ExprEvaluator._evaluate_operand_python"),
    ("neosqlite.collection.query_engine", "QueryEngine.aggregate_with_constraints"),
    ("neosqlite.collection.query_engine.python_aggregation_engine", "execute_python_aggregation"),
]


def _check_targets() -> None:
    import importlib

    missing = []
    for module_name, attr in _TARGETS:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(f"{module_name}.{attr}")
                break
    if missing:
        raise UntestedVersionError(f"cannot apply the embedded-store fixes: {', '.join(missing)} not found "
                                   f"(installed: {installed_versions()})")


def apply() -> None:
    """Check the versions and patch nx-27017/neosqlite in this process (idempotent)."""
    global _applied
    if _applied:
        return
    check_versions()
    _check_targets()
    _patch_handshake()
    _patch_sort()
    _patch_aggregation()
    _patch_set_types()
    _applied = True


def main(argv: list[str] | None = None) -> int:
    """``nx_27017`` with the fixes: the same command-line arguments as nx-27017's own ``main``."""
    try:
        apply()
    except UntestedVersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    from nx_27017.nx_27017 import main as nx_main

    sys.argv = ["nx_27017", *(sys.argv[1:] if argv is None else argv)]
    return nx_main() or 0


if __name__ == "__main__":
    sys.exit(main())
