"""Compiling and running `x-kubernetes-validations` rules with cel-python, as kube-apiserver does.

The server's conventions live here: property-name escaping, `self`/`oldSelf` typed by the schema, the
static checks cel-go makes at CRD creation (unknown functions and fields), and the wording of compile
and evaluation errors, so that no rule, however broken, raises out of validation. The Kubernetes
function libraries are in `cellib`.
"""

from __future__ import annotations

import base64
import datetime
import functools
import re
from collections.abc import Mapping
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, Evaluator

from .cellib import LIBRARY, OPT_SELECT, KMap, Namespace

__all__ = [
    "MACROS",
    "FieldChecker",
    "Memo",
    "Program",
    "check_fields",
    "compile_rule",
    "escape_property",
    "evaluate",
    "program",
    "to_cel",
]

MACROS = {"all", "exists", "exists_one", "map", "filter"}
# Functions cel-python provides itself, plus the CEL builtins it resolves through the grammar.
_CORE_FUNCTIONS = {
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "has",
    "type",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "duration",
    "timestamp",
    "dyn",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getMonth",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getSeconds",
}
_VARIABLES = {"self", "oldSelf", "format", "optional", "sets", "null_type", "int", "uint", "double", "string"}
_VARIABLES |= {"bool", "bytes", "list", "map", "type", "duration", "timestamp", "dyn"}

_RESERVED = {
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
}
_ESCAPABLE = re.compile(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$")


def escape_property(name: str) -> str | None:
    """The name a schema property has inside CEL, or None when CEL cannot reach it (as in k8s)."""
    if name in _RESERVED:
        return f"__{name}__"
    if not _ESCAPABLE.match(name):
        return None
    return (
        name.replace("__", "__underscores__")
        .replace(".", "__dot__")
        .replace("-", "__dash__")
        .replace("/", "__slash__")
    )


def _rewrite_optional_select(source: str) -> str:
    """cel-python cannot parse `.?field`; rewrite it outside string literals to a plain selection."""
    out: list[str] = []
    i = 0
    quote: str | None = None
    while i < len(source):
        ch = source[i]
        if quote is not None:
            out.append(ch)
            if ch == "\\" and i + 1 < len(source):
                out.append(source[i + 1])
                i += 2
                continue
            if source.startswith(quote, i):
                out.append(source[i + 1 : i + len(quote)])
                i += len(quote)
                quote = None
                continue
            i += 1
            continue
        if ch in "'\"":
            quote = source[i : i + 3] if source[i : i + 3] in ("'''", '"""') else ch
            out.append(quote)
            i += len(quote)
            continue
        match = re.match(r"\.\?\s*([A-Za-z_][A-Za-z0-9_]*)", source[i:])
        if match:
            out.append("." + OPT_SELECT + match.group(1))
            i += match.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


_KNOWN_FUNCTIONS = _CORE_FUNCTIONS | MACROS | set(LIBRARY)


class _Runner(celpy.InterpretedRunner):
    """Builds the base activation (functions, type annotations) once per rule instead of per evaluation;
    cel-python's Evaluator clones it before binding variables, so sharing it is safe."""

    def __init__(self, environment: celpy.Environment, ast: lark.Tree[Any], functions: Any = None) -> None:
        super().__init__(environment, ast, functions)
        self._base = self.new_activation()

    def evaluate(self, context: Any) -> Any:
        return Evaluator(ast=self.ast, activation=self._base).evaluate(context)


_ENV = celpy.Environment(runner_class=_Runner)


# ---------------------------------------------------------------------------------------------------
# Compiling.


class Program:
    """A compiled rule: its AST, whether it is a transition rule, and the runner."""

    def __init__(self, source: str, ast: lark.Tree[Any], uses_old_self: bool) -> None:
        self.source = source
        self.ast = ast
        self.uses_old_self = uses_old_self
        self.runner = _ENV.program(ast, functions=LIBRARY)


def _check(ast: lark.Tree[Any]) -> tuple[bool, list[str]]:
    """Static checks cel-python's parser does not make: unknown functions and variables."""
    bound: set[str] = set()
    problems: list[str] = []
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS and len(node.children) > 2:
            exprlist = node.children[2]
            if isinstance(exprlist, lark.Tree) and exprlist.children:
                first = exprlist.children[0]
                if isinstance(first, lark.Tree):
                    idents = [t for t in first.iter_subtrees() if t.data == "ident"]
                    if len(idents) == 1:
                        bound.add(str(idents[0].children[0]))
    uses_old_self = False
    for node in ast.iter_subtrees():
        if node.data == "ident":
            name = str(node.children[0])
            if name == "oldSelf":
                uses_old_self = True
            if name not in _VARIABLES and name not in bound:
                problems.append(f"undeclared reference to '{name}' (in container '')")
        elif node.data == "member_dot_arg":
            name = str(node.children[1])
            if name not in _KNOWN_FUNCTIONS:
                problems.append(f"undeclared reference to '{name}' (in container '')")
        elif node.data == "ident_arg":
            name = str(node.children[0])
            if name not in _KNOWN_FUNCTIONS:
                problems.append(f"undeclared reference to '{name}' (in container '')")
    return uses_old_self, problems


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> Program | str:
    if not source.strip():
        return "compilation failed: ERROR: <input>:1:1: Syntax error: the rule is empty"
    try:
        ast = _ENV.compile(_rewrite_optional_select(source))
    except Exception as exc:  # cel-python raises CELParseError and lark's own errors alike
        detail = " ".join(str(exc).split())
        return f"compilation failed: ERROR: <input>: Syntax error: {detail}"
    uses_old_self, problems = _check(ast)
    if problems:
        return "compilation failed: " + "; ".join(f"ERROR: <input>: {p}" for p in problems)
    return Program(source, ast, uses_old_self)


def program(source: str) -> Program | str:
    """The compiled rule, or the compile error text as the API server words it."""
    return _compile(source)


def compile_rule(rule: str, schema: Mapping[str, Any] | None = None, *, root: bool = False) -> None:
    """Raise ValueError with the compile error when `rule` is not valid CEL for a CRD.

    With `schema` (the node the rule sits on; `root` for the resource root) field names are checked
    too, as the server's type check does: `self.replcas` is refused when there is no such field.
    """
    compiled = _compile(rule)
    if isinstance(compiled, str):
        raise ValueError(compiled)
    if schema is not None:
        problems = check_fields(rule, schema, root=root)
        if problems:
            raise ValueError("compilation failed: " + "; ".join(problems))


def _unescape(name: str, props: Mapping[str, Any]) -> str | None:
    for prop in props:
        if escape_property(str(prop)) == name:
            return str(prop)
    return None


_ROOT_FIELDS: dict[str, Any] = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "generateName": {"type": "string"}},
    },
}


class FieldChecker:
    """The part of cel-go's type check that catches typos: `self.replcas` on a schema without it.

    Only member chains rooted at `self`/`oldSelf` or a macro variable over them are resolved; anything
    else is dynamic and passes, so this never refuses a rule the server would accept.
    """

    def __init__(self, schema: Mapping[str, Any], root: bool) -> None:
        self.schema = schema
        self.root = root
        self.problems: list[str] = []

    def visit(self, node: Any, env: dict[str, Mapping[str, Any] | None]) -> None:
        if not isinstance(node, lark.Tree):
            return
        if node.data == "member_dot":
            self.resolve(node, env)
            return
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS and len(node.children) > 2:
            target = self.resolve(node.children[0], env)
            args = node.children[2].children if isinstance(node.children[2], lark.Tree) else []
            var = self._ident_name(args[0]) if args else None
            inner = dict(env)
            if var is not None:
                inner[var] = self._element_schema(target)
            for arg in args[1:]:
                self.visit(arg, inner)
            return
        for child in node.children:
            self.visit(child, env)

    def _ident_name(self, node: Any) -> str | None:
        idents = [t for t in node.iter_subtrees() if t.data == "ident"] if isinstance(node, lark.Tree) else []
        return str(idents[0].children[0]) if len(idents) == 1 else None

    def _element_schema(self, schema: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        if schema is None:
            return None
        items = schema.get("items")
        if schema.get("type") == "array" and isinstance(items, Mapping):
            return items
        if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), Mapping):
            return {"type": "string"}  # macros over a map bind its keys
        return None

    def resolve(self, node: Any, env: dict[str, Mapping[str, Any] | None]) -> Mapping[str, Any] | None:
        """The schema of `node`'s value when it is statically known, else None (dynamic)."""
        if not isinstance(node, lark.Tree):
            return None
        trees = [c for c in node.children if isinstance(c, lark.Tree)]
        if (
            node.data
            in (
                "member",
                "primary",
                "expr",
                "conditionalor",
                "conditionaland",
                "relation",
                "addition",
                "multiplication",
                "unary",
            )
            and len(node.children) == 1
            and trees
        ):
            return self.resolve(trees[0], env)
        if node.data == "ident":
            name = str(node.children[0])
            if name in ("self", "oldSelf"):
                return self._root_schema()
            return env.get(name)
        if node.data == "member_dot":
            base = self.resolve(node.children[0], env)
            token = node.children[1]
            return self._field(base, str(token), getattr(token, "column", None))
        self.visit(node, env)
        return None

    def _root_schema(self) -> Mapping[str, Any]:
        if not self.root:
            return self.schema
        props = dict(self.schema.get("properties") or {})
        props.update(_ROOT_FIELDS)
        return {**self.schema, "properties": props}

    def _field(
        self, schema: Mapping[str, Any] | None, name: str, column: int | None
    ) -> Mapping[str, Any] | None:
        if name.startswith(OPT_SELECT):
            # `.?field` must still name a declared field; chained `.?` selections continue below it.
            return self._field(schema, name[len(OPT_SELECT) :], column)
        if schema is None or schema.get("type") != "object":
            return None
        props = schema.get("properties")
        if isinstance(props, Mapping) and props:
            prop = _unescape(name, props)
            if prop is not None and isinstance(props[prop], Mapping):
                sub = props[prop]
                if sub.get("x-kubernetes-embedded-resource"):
                    merged = dict(sub.get("properties") or {})
                    merged.update(_ROOT_FIELDS)
                    return {**sub, "properties": merged}
                return sub if isinstance(sub, Mapping) else None
        addl = schema.get("additionalProperties")
        if isinstance(addl, Mapping):
            return addl
        if schema.get("x-kubernetes-preserve-unknown-fields") or addl is True:
            return None
        where = f"<input>:1:{column}" if column else "<input>"
        self.problems.append(f"ERROR: {where}: undefined field '{name}'")
        return None


def check_fields(source: str, schema: Mapping[str, Any], *, root: bool = False) -> list[str]:
    """Compile-time field errors of a rule placed at `schema` (root: the resource root)."""
    compiled = _compile(source)
    if isinstance(compiled, str):
        return []
    checker = FieldChecker(schema, root)
    checker.visit(compiled.ast, {})
    return list(dict.fromkeys(checker.problems))


# ---------------------------------------------------------------------------------------------------
# Values.


def _schema_type(schema: Mapping[str, Any] | None) -> str:
    return str(schema.get("type", "")) if schema else ""


Memo = dict[tuple[int, int], Any]


def to_cel(value: Any, schema: Mapping[str, Any] | None, memo: Memo | None = None) -> Any:
    """A JSON value as the CEL value the API server gives a rule, typed by its schema.

    `memo` caches containers by identity during one validation: rules at every level would otherwise
    convert the same subtrees again and again.
    """
    if memo is not None and isinstance(value, list | Mapping):
        key = (id(value), id(schema))
        if key not in memo:
            memo[key] = _to_cel(value, schema, memo)
        return memo[key]
    return _to_cel(value, schema, memo)


def _to_cel(value: Any, schema: Mapping[str, Any] | None, memo: Memo | None) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    stype = _schema_type(schema)
    if isinstance(value, int):
        if stype == "number" or not -(2**63) <= value < 2**63:
            # Beyond int64 the server has decoded a float64 (and the schema refused it as an integer).
            return celtypes.DoubleType(float(value))
        return celtypes.IntType(value)
    if isinstance(value, float):
        if stype == "integer" and value.is_integer():
            return celtypes.IntType(int(value))
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        fmt = schema.get("format") if schema else None
        if stype == "string" and fmt == "date-time":
            try:
                return celtypes.TimestampType(value)
            except (ValueError, TypeError):
                return celtypes.StringType(value)
        if stype == "string" and fmt == "duration":
            try:
                return celtypes.DurationType(value)
            except (ValueError, TypeError):
                return celtypes.StringType(value)
        if stype == "string" and fmt == "byte":
            try:
                return celtypes.BytesType(base64.b64decode(value))
            except ValueError:
                return celtypes.StringType(value)
        return celtypes.StringType(value)
    if isinstance(value, list):
        items = schema.get("items") if schema else None
        item_schema = items if isinstance(items, Mapping) else None
        return celtypes.ListType([to_cel(v, item_schema, memo) for v in value])
    if isinstance(value, Mapping):
        props = schema.get("properties") if schema else None
        addl = schema.get("additionalProperties") if schema else None
        out: dict[Any, Any] = {}
        for key, child in value.items():
            if child is None and isinstance(props, Mapping) and key in props:
                continue  # null-valued fields are absent to CEL, as the server documents
            if isinstance(props, Mapping) and key in props:
                name = escape_property(str(key))
                if name is not None:
                    out[celtypes.StringType(name)] = to_cel(child, props[key], memo)
            else:
                sub = addl if isinstance(addl, Mapping) else None
                out[celtypes.StringType(str(key))] = to_cel(child, sub, memo)
        return KMap(out)
    if isinstance(value, datetime.datetime):
        return celtypes.TimestampType(value)
    return value


def evaluate(compiled: Program, activation: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Run a rule; returns (value, None) or (None, error text as the server prints it)."""
    context: dict[str, Any] = {
        "format": Namespace("format"),
        "optional": Namespace("optional"),
        "sets": Namespace("sets"),
    }
    context.update(activation)
    try:
        result = compiled.runner.evaluate(context)
    except CELEvalError as exc:
        return None, _eval_message(exc)
    except RecursionError:
        return None, "expression too deeply nested"
    except Exception as exc:  # a cel-python bug must not take the API server down
        return None, f"internal error: {type(exc).__name__}: {exc}"
    if isinstance(result, CELEvalError):
        return None, _eval_message(result)
    return result, None


_NO_MEMBER = re.compile(r"no such member in mapping: '(.*)'")


def _eval_message(exc: CELEvalError) -> str:
    message = str(exc.args[0]) if exc.args else str(exc)
    match = _NO_MEMBER.search(message)
    if match:
        return f"no such key: {match.group(1)}"
    if message.startswith("undeclared reference"):
        return message.split(" (in activation", 1)[0]
    if "found no matching overload" in message or "no such overload" in message:
        return "no such overload"
    if "divide by zero" in message:
        return "division by zero"
    return message
