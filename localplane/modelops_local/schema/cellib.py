"""The CEL libraries the Kubernetes API server adds to CEL, as cel-python custom functions.

cel-python implements the CEL core only. Rules in CRDs also use Kubernetes' list, string, regex, URL,
quantity, format, optional, sets and IP/CIDR libraries, the strings `format()` extension, and CEL as
Kubernetes configures it (numbers compare across int and double). Every function here returns a CEL
value or a CELEvalError, which CEL propagates like an error value; none raises.
"""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress
import re
import urllib.parse
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from celpy import celtypes
from celpy.evaluation import CELEvalError

from .names import (
    dns1035_label_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    label_value_errors,
    qualified_name_errors,
)
from .quantity import SYNTAX_ERROR, format_quantity, parse_quantity
from .regex import compile_re2

__all__ = [
    "LIBRARY",
    "OPT_SELECT",
    "CelCIDR",
    "CelIP",
    "CelOptional",
    "CelQuantity",
    "CelSemver",
    "CelURL",
    "KMap",
    "Namespace",
    "cel_equal",
]

# Opaque values of the Kubernetes libraries.


OPT_SELECT = "__optsel__"


class CelOptional(celtypes.MapType):
    """optional.of(x) / optional.none(); also what `oldSelf` is under optionalOldSelf.

    It is a (empty) MapType only so that cel-python lets `opt.?field` reach __getitem__ below.
    """

    def __init__(self, value: Any = None, present: bool = False) -> None:
        super().__init__({})
        self.value = value
        self.present = present

    def __getitem__(self, key: Any) -> Any:
        name = str(key)
        if name.startswith(OPT_SELECT) and self.present and isinstance(self.value, celtypes.MapType):
            return self.value[key]
        if name.startswith(OPT_SELECT):
            return CelOptional()
        raise KeyError(key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelOptional) and self.present == other.present and self.value == other.value

    def __hash__(self) -> int:  # type: ignore[override]  # dict is unhashable; optionals compare by value
        return hash((self.present, repr(self.value)))

    def __repr__(self) -> str:
        return f"optional.of({self.value!r})" if self.present else "optional.none()"


class KMap(celtypes.MapType):
    """An object or map value; `x.?field` (rewritten to x.__optsel__field) yields an optional."""

    def __getitem__(self, key: Any) -> Any:
        name = str(key)
        if name.startswith(OPT_SELECT):
            real = celtypes.StringType(name[len(OPT_SELECT) :])
            if real in self.keys():
                return CelOptional(super().__getitem__(real), True)
            return CelOptional()
        return super().__getitem__(key)


class CelQuantity:
    def __init__(self, value: Decimal) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelQuantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"quantity({format_quantity(self.value)!r})"


class CelURL:
    def __init__(self, parsed: urllib.parse.SplitResult) -> None:
        self.parsed = parsed


class _Format:
    def __init__(self, name: str, check: Callable[[str], list[str]]) -> None:
        self.name = name
        self.check = check


class Namespace:
    """The receiver of `format.x()` and `optional.none()`; cel-python passes it as the first argument."""

    def __init__(self, name: str) -> None:
        self.name = name


# ---------------------------------------------------------------------------------------------------
# Library functions. Each returns a CEL value or a CELEvalError (which CEL propagates like an error
# value, so `false && <error>` still short-circuits); none raises.


def _err(message: str) -> CELEvalError:
    return CELEvalError(message)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        for arg in args:
            if isinstance(arg, CELEvalError):
                return arg
        try:
            return fn(*args)
        except CELEvalError as exc:
            return exc
        except (TypeError, ValueError, IndexError, KeyError, ArithmeticError) as exc:
            return _err(str(exc) or type(exc).__name__)

    return wrapper


def _no_overload(name: str, *args: Any) -> CELEvalError:
    kinds = ", ".join(type(a).__name__ for a in args)
    return _err(f"no such overload: {name}({kinds})")


# CEL as Kubernetes configures it compares numbers across int, uint and double, and `==` between values
# of different types is false rather than an error; cel-python errors on both, so rules such as
# `self.ratio <= 1` on a `number` field would fail here while a cluster accepts them.
def _is_number(value: Any) -> bool:
    return isinstance(value, celtypes.IntType | celtypes.UintType | celtypes.DoubleType) and not isinstance(
        value, celtypes.BoolType
    )


def cel_equal(a: Any, b: Any) -> bool:
    if isinstance(a, CelOptional) or isinstance(b, CelOptional):
        return (
            isinstance(a, CelOptional)
            and isinstance(b, CelOptional)
            and a.present == b.present
            and (not a.present or cel_equal(a.value, b.value))
        )
    if _is_number(a) and _is_number(b):
        return bool(a == b) if type(a) is type(b) else _num_value(a) == _num_value(b)
    if isinstance(a, celtypes.BoolType) or isinstance(b, celtypes.BoolType):
        return isinstance(a, celtypes.BoolType) and isinstance(b, celtypes.BoolType) and bool(a) == bool(b)
    if isinstance(a, celtypes.ListType) and isinstance(b, celtypes.ListType):
        return len(a) == len(b) and all(cel_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, celtypes.MapType) and isinstance(b, celtypes.MapType):
        if len(a) != len(b):
            return False
        for key, value in a.items():
            match = [k for k in b if cel_equal(k, key)]
            if not match or not cel_equal(value, b[match[0]]):
                return False
        return True
    if a is None or b is None:
        return a is None and b is None
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return bool(a == b)


def _num_value(value: Any) -> Any:
    return float(value) if isinstance(value, celtypes.DoubleType) else int(value)


def _compare(name: str, op: Callable[[Any, Any], bool]) -> Callable[..., Any]:
    def call(a: Any, b: Any) -> Any:
        if _is_number(a) and _is_number(b):
            return celtypes.BoolType(op(_num_value(a), _num_value(b)))
        same_kind = type(a) is type(b) or (isinstance(a, str) and isinstance(b, str))
        if not same_kind:
            return _no_overload(name, a, b)
        return celtypes.BoolType(op(a, b))

    return call


def _equal(a: Any, b: Any) -> Any:
    return celtypes.BoolType(cel_equal(a, b))


def _not_equal(a: Any, b: Any) -> Any:
    return celtypes.BoolType(not cel_equal(a, b))


def _in(item: Any, container: Any) -> Any:
    if isinstance(container, celtypes.ListType):
        return celtypes.BoolType(any(cel_equal(item, x) for x in container))
    if isinstance(container, celtypes.MapType):
        return celtypes.BoolType(any(cel_equal(item, k) for k in container))
    return _no_overload("in", item, container)


def _is_sorted(items: Any) -> Any:
    if not isinstance(items, celtypes.ListType):
        return _no_overload("isSorted", items)
    values: list[Any] = list(items)
    return celtypes.BoolType(all(values[i] <= values[i + 1] for i in range(len(values) - 1)))


def _sum(items: Any) -> Any:
    if not isinstance(items, celtypes.ListType):
        return _no_overload("sum", items)
    values: list[Any] = list(items)
    if not values:
        return celtypes.IntType(0)
    total = values[0]
    for item in values[1:]:
        total = total + item
    return total


def _min(items: Any, *rest: Any) -> Any:
    if rest or not isinstance(items, celtypes.ListType):
        return _no_overload("min", items, *rest)
    if not items:
        return _err("min called on empty list")
    values: list[Any] = list(items)
    return min(values)


def _max(items: Any, *rest: Any) -> Any:
    if rest or not isinstance(items, celtypes.ListType):
        return _no_overload("max", items, *rest)
    if not items:
        return _err("max called on empty list")
    values: list[Any] = list(items)
    return max(values)


def _index_of(target: Any, needle: Any, *offset: Any) -> Any:
    if isinstance(target, celtypes.ListType) and not offset:
        for i, item in enumerate(target):
            if cel_equal(item, needle):
                return celtypes.IntType(i)
        return celtypes.IntType(-1)
    if isinstance(target, celtypes.StringType) and isinstance(needle, celtypes.StringType):
        start = int(offset[0]) if offset else 0
        if start < 0 or start > len(target):
            return _err(f"index out of range: {start}")
        return celtypes.IntType(str(target).find(str(needle), start))
    return _no_overload("indexOf", target, needle, *offset)


def _last_index_of(target: Any, needle: Any, *offset: Any) -> Any:
    if isinstance(target, celtypes.ListType) and not offset:
        for i in range(len(target) - 1, -1, -1):
            if cel_equal(target[i], needle):
                return celtypes.IntType(i)
        return celtypes.IntType(-1)
    if isinstance(target, celtypes.StringType) and isinstance(needle, celtypes.StringType):
        end = int(offset[0]) if offset else len(target)
        if end < 0 or end > len(target):
            return _err(f"index out of range: {end}")
        return celtypes.IntType(str(target).rfind(str(needle), 0, end + len(needle)))
    return _no_overload("lastIndexOf", target, needle, *offset)


def _string_fn(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(target: Any, *args: Any) -> Any:
        if not isinstance(target, celtypes.StringType):
            return _no_overload(name, target, *args)
        return fn(str(target), *args)

    return call


def _split(s: str, sep: Any, *limit: Any) -> Any:
    # Go's strings.SplitN: n < 0 all parts, n == 0 none, n > 0 at most n (the last holds the rest).
    n = int(limit[0]) if limit else -1
    separator = str(sep)
    if n == 0:
        parts: list[str] = []
    elif separator == "":
        chars = list(s)
        parts = chars if n < 0 or n >= len(chars) else [*chars[: n - 1], "".join(chars[n - 1 :])]
    else:
        parts = s.split(separator, n - 1) if n > 0 else s.split(separator)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _join(items: Any, *sep: Any) -> Any:
    if not isinstance(items, celtypes.ListType):
        return _no_overload("join", items, *sep)
    if not all(isinstance(i, celtypes.StringType) for i in items):
        return _err("join: list must contain only strings")
    return celtypes.StringType((str(sep[0]) if sep else "").join(str(i) for i in items))


def _replace(s: str, old: Any, new: Any, *limit: Any) -> Any:
    n = int(limit[0]) if limit else -1
    return celtypes.StringType(s.replace(str(old), str(new), n))


def _substring(s: str, start: Any, *end: Any) -> Any:
    b = int(start)
    e = int(end[0]) if end else len(s)
    if b < 0 or e > len(s) or b > e:
        return _err(f"index out of range: {b}..{e} of a string of length {len(s)}")
    return celtypes.StringType(s[b:e])


def _char_at(s: str, index: Any) -> Any:
    i = int(index)
    if i < 0 or i > len(s):
        return _err(f"index out of range: {i}")
    return celtypes.StringType(s[i : i + 1])


def _find(s: str, pattern: Any) -> Any:
    match = compile_re2(str(pattern)).search(s)
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(s: str, pattern: Any, *limit: Any) -> Any:
    found = [m.group(0) for m in compile_re2(str(pattern)).finditer(s)]
    if limit and int(limit[0]) >= 0:
        found = found[: int(limit[0])]
    return celtypes.ListType([celtypes.StringType(f) for f in found])


def _matches(target: Any, pattern: Any) -> Any:
    # CEL's matches is an unanchored RE2 search.
    if not isinstance(target, celtypes.StringType):
        return _no_overload("matches", target, pattern)
    try:
        return celtypes.BoolType(compile_re2(str(pattern)).search(str(target)) is not None)
    except re.error as exc:
        return _err(f"invalid regular expression {str(pattern)!r}: {exc}")


# URLs: k8s accepts absolute URIs and absolute paths, like Go's url.ParseRequestURI.
def _parse_url(text: str) -> urllib.parse.SplitResult | None:
    if not text or any(c in text for c in " \t\n"):
        return None
    try:
        parsed = urllib.parse.urlsplit(text)
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if not parsed.scheme and not text.startswith("/"):
        return None
    return parsed


def _url(target: Any) -> Any:
    parsed = _parse_url(str(target)) if isinstance(target, celtypes.StringType) else None
    if parsed is None:
        return _err(f"URL parse error during conversion from string: {target!r}")
    return CelURL(parsed)


def _is_url(target: Any) -> Any:
    return celtypes.BoolType(isinstance(target, celtypes.StringType) and _parse_url(str(target)) is not None)


def _url_part(name: str, fn: Callable[[urllib.parse.SplitResult], str]) -> Callable[..., Any]:
    def call(target: Any) -> Any:
        if not isinstance(target, CelURL):
            return _no_overload(name, target)
        return celtypes.StringType(fn(target.parsed))

    return call


def _hostname(p: urllib.parse.SplitResult) -> str:
    return p.hostname or ""


def _host(p: urllib.parse.SplitResult) -> str:
    return p.netloc.rsplit("@", 1)[-1]


def _port(p: urllib.parse.SplitResult) -> str:
    return str(p.port) if p.port is not None else ""


def _query(target: Any) -> Any:
    if not isinstance(target, CelURL):
        return _no_overload("getQuery", target)
    query = urllib.parse.parse_qs(target.parsed.query, keep_blank_values=True)
    return celtypes.MapType(
        {
            celtypes.StringType(k): celtypes.ListType([celtypes.StringType(x) for x in v])
            for k, v in query.items()
        }
    )


# Quantities.
def _quantity(target: Any) -> Any:
    if not isinstance(target, celtypes.StringType):
        return _no_overload("quantity", target)
    try:
        return CelQuantity(parse_quantity(str(target)))
    except ValueError:
        return _err(SYNTAX_ERROR)


def _is_quantity(target: Any) -> Any:
    if not isinstance(target, celtypes.StringType):
        return celtypes.BoolType(False)
    try:
        parse_quantity(str(target))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _qcmp(name: str, fn: Callable[[Decimal, Decimal], Any]) -> Callable[..., Any]:
    def call(a: Any, b: Any) -> Any:
        if not isinstance(a, CelQuantity):
            return _no_overload(name, a, b)
        if isinstance(b, CelQuantity):
            other = b.value
        elif isinstance(b, celtypes.IntType):
            other = Decimal(int(b))
        else:
            return _no_overload(name, a, b)
        return fn(a.value, other)

    return call


def _sign(a: Any) -> Any:
    if not isinstance(a, CelQuantity):
        return _no_overload("sign", a)
    return celtypes.IntType((a.value > 0) - (a.value < 0))


def _as_integer(a: Any) -> Any:
    if not isinstance(a, CelQuantity):
        return _no_overload("asInteger", a)
    if a.value != a.value.to_integral_value():
        return _err("cannot convert value to integer")
    if not -(2**63) <= a.value < 2**63:
        return _err("cannot convert value to integer")
    return celtypes.IntType(int(a.value))


def _is_integer(a: Any) -> Any:
    if not isinstance(a, CelQuantity):
        return _no_overload("isInteger", a)
    return celtypes.BoolType(a.value == a.value.to_integral_value() and -(2**63) <= a.value < 2**63)


def _as_float(a: Any) -> Any:
    if not isinstance(a, CelQuantity):
        return _no_overload("asApproximateFloat", a)
    return celtypes.DoubleType(float(a.value))


# Optionals.
def _optional_of(ns: Any, value: Any) -> Any:
    if not isinstance(ns, Namespace) or ns.name != "optional":
        return _no_overload("of", ns, value)
    return CelOptional(value, True)


def _optional_of_non_zero(ns: Any, value: Any) -> Any:
    if not isinstance(ns, Namespace) or ns.name != "optional":
        return _no_overload("ofNonZeroValue", ns, value)
    zero = value is None or (not isinstance(value, CelOptional) and not value)
    return CelOptional() if zero else CelOptional(value, True)


def _optional_none(ns: Any) -> Any:
    if not isinstance(ns, Namespace) or ns.name != "optional":
        return _no_overload("none", ns)
    return CelOptional()


def _has_value(opt: Any) -> Any:
    if not isinstance(opt, CelOptional):
        return _no_overload("hasValue", opt)
    return celtypes.BoolType(opt.present)


def _value(opt: Any) -> Any:
    if not isinstance(opt, CelOptional):
        return _no_overload("value", opt)
    if not opt.present:
        return _err("optional.none() dereference")
    return opt.value


def _or_value(opt: Any, default: Any) -> Any:
    if not isinstance(opt, CelOptional):
        return _no_overload("orValue", opt, default)
    return opt.value if opt.present else default


def _uri_errors(value: str) -> list[str]:
    return [] if _parse_url(value) is not None else ["an URI"]


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _uuid_errors(value: str) -> list[str]:
    return [] if _UUID.match(value) else ["an UUID"]


def _prefix(check: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """The generateName form: a trailing dash is allowed (random characters follow it)."""

    def call(value: str) -> list[str]:
        return check(value[:-1] + "a" if value.endswith("-") and len(value) > 1 else value)

    return call


def _byte_errors(value: str) -> list[str]:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return ["invalid base64"]
    return []


def _date_errors(value: str) -> list[str]:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return ["an RFC3339 date"]
    return [] if len(value) == 10 else ["an RFC3339 date"]


def _datetime_errors(value: str) -> list[str]:
    try:
        datetime.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return ["an RFC3339 date-time"]
    return [] if "T" in value.upper() else ["an RFC3339 date-time"]


_FORMATS: dict[str, Callable[[str], list[str]]] = {
    "dns1123Label": dns1123_label_errors,
    "dns1123Subdomain": dns1123_subdomain_errors,
    "dns1035Label": dns1035_label_errors,
    "dns1123LabelPrefix": _prefix(dns1123_label_errors),
    "dns1123SubdomainPrefix": _prefix(dns1123_subdomain_errors),
    "dns1035LabelPrefix": _prefix(dns1035_label_errors),
    "qualifiedName": qualified_name_errors,
    "labelValue": label_value_errors,
    "uri": _uri_errors,
    "uuid": _uuid_errors,
    "byte": _byte_errors,
    "date": _date_errors,
    "datetime": _datetime_errors,
}


# Semantic versions (Kubernetes' semver library): isSemver(s), semver(s).major()/.isLessThan(other)...
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


class CelSemver:
    def __init__(self, major: int, minor: int, patch: int, pre: tuple[str, ...]) -> None:
        self.major, self.minor, self.patch, self.pre = major, minor, patch, pre

    def key(self) -> tuple[Any, ...]:
        # A pre-release sorts before its release; numeric identifiers before alphanumeric ones.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelSemver) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


def _parse_semver(text: str) -> CelSemver | None:
    match = _SEMVER.match(text)
    if match is None:
        return None
    pre = tuple(match.group(4).split(".")) if match.group(4) else ()
    return CelSemver(int(match.group(1)), int(match.group(2)), int(match.group(3)), pre)


def _semver(target: Any) -> Any:
    parsed = _parse_semver(str(target)) if isinstance(target, celtypes.StringType) else None
    if parsed is None:
        return _err(f"invalid semver: {str(target)!r}")
    return parsed


def _semver_part(name: str) -> Callable[..., Any]:
    def call(target: Any) -> Any:
        if not isinstance(target, CelSemver):
            return _no_overload(name, target)
        return celtypes.IntType(getattr(target, name))

    return call


def _semver_cmp(name: str, fn: Callable[[tuple[Any, ...], tuple[Any, ...]], Any]) -> Callable[..., Any]:
    def call(a: Any, b: Any) -> Any:
        if not isinstance(a, CelSemver) or not isinstance(b, CelSemver):
            return _no_overload(name, a, b)
        return fn(a.key(), b.key())

    return call


def _format_factory(name: str) -> Callable[..., Any]:
    def call(ns: Any) -> Any:
        if not isinstance(ns, Namespace) or ns.name != "format":
            return _no_overload(name, ns)
        return _Format(name, _FORMATS[name])

    return call


def _format_named(ns: Any, name: Any) -> Any:
    if not isinstance(ns, Namespace) or ns.name != "format":
        return _no_overload("named", ns, name)
    check = _FORMATS.get(str(name))
    return CelOptional(_Format(str(name), check), True) if check else CelOptional()


def _format_validate(fmt: Any, value: Any) -> Any:
    if not isinstance(fmt, _Format) or not isinstance(value, celtypes.StringType):
        return _no_overload("validate", fmt, value)
    errors = fmt.check(str(value))
    if not errors:
        return CelOptional()
    return CelOptional(celtypes.ListType([celtypes.StringType(e) for e in errors]), True)


# String formatting (cel-go's strings extension, which Kubernetes enables): '%s of %d'.format([a, b]).
_FORMAT_VERB = re.compile(r"%(\.[0-9]+)?([sdfeboxX%])")


def _to_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, celtypes.BoolType):
        return "true" if value else "false"
    if isinstance(value, celtypes.ListType):
        return "[" + ", ".join(_to_text(v) for v in value) + "]"
    if isinstance(value, celtypes.MapType):
        return "{" + ", ".join(f"{_to_text(k)}: {_to_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, celtypes.DoubleType):
        return repr(float(value)).removesuffix(".0") if float(value).is_integer() else repr(float(value))
    if isinstance(value, CelQuantity):
        return format_quantity(value.value)
    return str(value)


def _string_format(template: Any, args: Any) -> Any:
    if not isinstance(template, celtypes.StringType) or not isinstance(args, celtypes.ListType):
        return _no_overload("format", template, args)
    values: list[Any] = list(args)
    out: list[str] = []
    pos = 0
    used = 0
    for match in _FORMAT_VERB.finditer(str(template)):
        out.append(str(template)[pos : match.start()])
        pos = match.end()
        precision, verb = match.group(1), match.group(2)
        if verb == "%":
            out.append("%")
            continue
        if used >= len(values):
            return _err(f"index {used} out of range")
        value = values[used]
        used += 1
        if verb == "s":
            out.append(_to_text(value))
        elif verb == "d":
            if not _is_number(value) or isinstance(value, celtypes.DoubleType):
                return _err(
                    f"error during formatting: decimal clause can only be used on integers, was given {type(value).__name__}"
                )
            out.append(str(int(value)))
        elif verb in "fe":
            digits = int(precision[1:]) if precision else 6
            if not _is_number(value):
                return _err("error during formatting: fixed-point clause can only be used on doubles")
            out.append(f"{float(value):.{digits}{verb}}")
        elif verb in "boxX":
            if isinstance(value, celtypes.StringType) and verb in "xX":
                hexed = str(value).encode().hex()
                out.append(hexed.upper() if verb == "X" else hexed)
            elif _is_number(value) and not isinstance(value, celtypes.DoubleType):
                out.append(format(int(value), verb))
            else:
                return _err(f"error during formatting: only integers can be formatted with %{verb}")
    out.append(str(template)[pos:])
    return celtypes.StringType("".join(out))


# Kubernetes' sets library: sets.contains(list, sublist), sets.equivalent(a, b), sets.intersects(a, b).
def _contains(target: Any, *args: Any) -> Any:
    if isinstance(target, Namespace) and target.name == "sets" and len(args) == 2:
        a, b = args
        if not isinstance(a, celtypes.ListType) or not isinstance(b, celtypes.ListType):
            return _no_overload("sets.contains", a, b)
        return celtypes.BoolType(all(any(cel_equal(x, y) for y in a) for x in b))
    if isinstance(target, str) and len(args) == 1 and isinstance(args[0], str):
        return celtypes.BoolType(str(args[0]) in str(target))
    return _no_overload("contains", target, *args)


def _sets_fn(name: str, fn: Callable[[list[Any], list[Any]], bool]) -> Callable[..., Any]:
    def call(ns: Any, a: Any, b: Any) -> Any:
        if not (isinstance(ns, Namespace) and ns.name == "sets"):
            return _no_overload(name, ns, a, b)
        if not isinstance(a, celtypes.ListType) or not isinstance(b, celtypes.ListType):
            return _no_overload(f"sets.{name}", a, b)
        return celtypes.BoolType(fn(list(a), list(b)))

    return call


def _subset(a: list[Any], b: list[Any]) -> bool:
    return all(any(cel_equal(x, y) for y in b) for x in a)


# IP and CIDR (Kubernetes 1.31+ libraries): isIP, ip(s).family(), isCIDR, cidr(s).containsIP(...).
class CelIP:
    def __init__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        self.address = address

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelIP) and self.address == other.address

    def __hash__(self) -> int:
        return hash(self.address)


class CelCIDR:
    def __init__(self, text: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        self.address = ipaddress.ip_address(text.split("/")[0])
        self.network = network

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CelCIDR) and (self.address, self.network) == (other.address, other.network)

    def __hash__(self) -> int:
        return hash((self.address, self.network))


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Kubernetes refuses zones and IPv4-mapped IPv6 addresses.
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return None
    return address


def _parse_cidr(text: str) -> CelCIDR | None:
    if "/" not in text or _parse_ip(text.split("/")[0]) is None:
        return None
    try:
        return CelCIDR(text, ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


def _ip(target: Any) -> Any:
    if isinstance(target, CelCIDR):
        return CelIP(target.address)
    address = _parse_ip(str(target)) if isinstance(target, celtypes.StringType) else None
    if address is None:
        return _err(f"IP Address {str(target)!r} parse error during conversion from string")
    return CelIP(address)


def _cidr(target: Any) -> Any:
    parsed = _parse_cidr(str(target)) if isinstance(target, celtypes.StringType) else None
    if parsed is None:
        return _err(f"network address parse error during conversion from string: {str(target)!r}")
    return parsed


def _ip_pred(name: str, fn: Callable[[Any], bool]) -> Callable[..., Any]:
    def call(target: Any) -> Any:
        if not isinstance(target, CelIP):
            return _no_overload(name, target)
        return celtypes.BoolType(fn(target.address))

    return call


def _family(target: Any) -> Any:
    if not isinstance(target, CelIP):
        return _no_overload("family", target)
    return celtypes.IntType(target.address.version)


def _contains_ip(target: Any, other: Any) -> Any:
    if not isinstance(target, CelCIDR):
        return _no_overload("containsIP", target, other)
    address = other.address if isinstance(other, CelIP) else _parse_ip(str(other))
    if address is None:
        return _err(f"IP Address {str(other)!r} parse error during conversion from string")
    return celtypes.BoolType(address in target.network)


def _contains_cidr(target: Any, other: Any) -> Any:
    if not isinstance(target, CelCIDR):
        return _no_overload("containsCIDR", target, other)
    inner = other if isinstance(other, CelCIDR) else _parse_cidr(str(other))
    if inner is None:
        return _err(f"network address parse error during conversion from string: {str(other)!r}")
    return celtypes.BoolType(
        inner.network.version == target.network.version and inner.network.subnet_of(target.network)  # type: ignore[arg-type]
    )


def _prefix_length(target: Any) -> Any:
    if not isinstance(target, CelCIDR):
        return _no_overload("prefixLength", target)
    return celtypes.IntType(target.network.prefixlen)


def _either(first: Callable[..., Any], second: Callable[..., Any]) -> Callable[..., Any]:
    """One CEL name, two receiver types: use the second when the first has no overload for the call."""

    def call(*args: Any) -> Any:
        result = first(*args)
        if isinstance(result, CELEvalError) and str(result.args[0]).startswith("no such overload"):
            return second(*args)
        return result

    return call


def _library() -> dict[str, Callable[..., Any]]:
    s = _string_fn
    lib: dict[str, Callable[..., Any]] = {
        "_==_": _equal,
        "_!=_": _not_equal,
        "_<_": _compare("_<_", lambda x, y: x < y),
        "_<=_": _compare("_<=_", lambda x, y: x <= y),
        "_>_": _compare("_>_", lambda x, y: x > y),
        "_>=_": _compare("_>=_", lambda x, y: x >= y),
        "_in_": _in,
        "isSorted": _is_sorted,
        "sum": _sum,
        "min": _min,
        "max": _max,
        "indexOf": _index_of,
        "lastIndexOf": _last_index_of,
        "lowerAscii": s("lowerAscii", lambda v: celtypes.StringType(v.translate(_ASCII_LOWER))),
        "upperAscii": s("upperAscii", lambda v: celtypes.StringType(v.translate(_ASCII_UPPER))),
        "trim": s("trim", lambda v: celtypes.StringType(v.strip())),
        "split": s("split", _split),
        "join": _join,
        "replace": s("replace", _replace),
        "substring": s("substring", _substring),
        "charAt": s("charAt", _char_at),
        "reverse": s("reverse", lambda v: celtypes.StringType(v[::-1])),
        "find": s("find", _find),
        "findAll": s("findAll", _find_all),
        "matches": _matches,
        "format": _string_format,
        "contains": _contains,
        "equivalent": _sets_fn("equivalent", lambda a, b: _subset(a, b) and _subset(b, a)),
        "intersects": _sets_fn("intersects", lambda a, b: any(any(cel_equal(x, y) for y in b) for x in a)),
        "isIP": lambda t: celtypes.BoolType(
            isinstance(t, celtypes.StringType) and _parse_ip(str(t)) is not None
        ),
        "ip": _ip,
        "family": _family,
        "isLoopback": _ip_pred("isLoopback", lambda a: a.is_loopback),
        "isUnspecified": _ip_pred("isUnspecified", lambda a: a.is_unspecified),
        "isLinkLocalUnicast": _ip_pred("isLinkLocalUnicast", lambda a: a.is_link_local),
        "isGlobalUnicast": _ip_pred(
            "isGlobalUnicast",
            lambda a: (
                not (a.is_loopback or a.is_unspecified or a.is_link_local or a.is_multicast)
                and a != ipaddress.IPv4Address("255.255.255.255")
            ),
        ),
        "isCIDR": lambda t: celtypes.BoolType(
            isinstance(t, celtypes.StringType) and _parse_cidr(str(t)) is not None
        ),
        "cidr": _cidr,
        "containsIP": _contains_ip,
        "containsCIDR": _contains_cidr,
        "prefixLength": _prefix_length,
        "url": _url,
        "isURL": _is_url,
        "getScheme": _url_part("getScheme", lambda p: p.scheme),
        "getHost": _url_part("getHost", _host),
        "getHostname": _url_part("getHostname", _hostname),
        "getPort": _url_part("getPort", _port),
        "getEscapedPath": _url_part("getEscapedPath", lambda p: p.path),
        "getQuery": _query,
        "quantity": _quantity,
        "isQuantity": _is_quantity,
        "compareTo": _either(
            _qcmp("compareTo", lambda a, b: celtypes.IntType((a > b) - (a < b))),
            _semver_cmp("compareTo", lambda a, b: celtypes.IntType((a > b) - (a < b))),
        ),
        "isGreaterThan": _either(
            _qcmp("isGreaterThan", lambda a, b: celtypes.BoolType(a > b)),
            _semver_cmp("isGreaterThan", lambda a, b: celtypes.BoolType(a > b)),
        ),
        "isLessThan": _either(
            _qcmp("isLessThan", lambda a, b: celtypes.BoolType(a < b)),
            _semver_cmp("isLessThan", lambda a, b: celtypes.BoolType(a < b)),
        ),
        "isSemver": lambda t: celtypes.BoolType(
            isinstance(t, celtypes.StringType) and _parse_semver(str(t)) is not None
        ),
        "semver": _semver,
        "major": _semver_part("major"),
        "minor": _semver_part("minor"),
        "patch": _semver_part("patch"),
        "add": _qcmp("add", lambda a, b: CelQuantity(a + b)),
        "sub": _qcmp("sub", lambda a, b: CelQuantity(a - b)),
        "sign": _sign,
        "asInteger": _as_integer,
        "isInteger": _is_integer,
        "asApproximateFloat": _as_float,
        "of": _optional_of,
        "ofNonZeroValue": _optional_of_non_zero,
        "none": _optional_none,
        "hasValue": _has_value,
        "value": _value,
        "orValue": _or_value,
        "named": _format_named,
        "validate": _format_validate,
    }
    for name in _FORMATS:
        lib[name] = _format_factory(name)
    return {name: _guard(fn) for name, fn in lib.items()}


LIBRARY = _library()
