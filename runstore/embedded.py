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

import datetime as dt
import os
import sys
from importlib import metadata

from .semantics import (
    _nest_dotted,
    arithmetic,
    bson_sort_key,
    copy_document,
    project,
    sql_id_sort_terms,
    sql_sort_terms,
)

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
