"""Fine-tuning data: a JSONL file of text or chat examples, checked line by line before any step.

A bad line must end the job before a GPU-hour is spent, with a message a person can act on: which line,
what is wrong, what was expected. So the whole file is read and checked first (invalid UTF-8, not JSON,
not an object, a missing or empty field, a chat turn without role or content, an unknown role), every
problem is collected with its line number, and the job fails with DataValidationFailed (exit 65) when
there are more than `maxInvalidLines`. Then every example is tokenized and its length is checked against
`maxSequenceLength`: cut (`overLength: truncate`, the count is logged and reported) or refused with the
lines that are too long (`overLength: refuse`).

The digest recorded in lineage is the sha256 of the file's bytes, as read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelops.api.finetune import FineTuneData
from modelops_worker.errors import ConfigError, DatasetNotFoundError, DataValidationError

log = logging.getLogger("modelops_worker.llm_train.data")

CHAT_ROLES = ("system", "user", "assistant", "tool")
# The fields that say which kind a line is (format auto).
KINDS = {"text": ("text",), "chat": ("messages",), "completion": ("prompt", "completion")}
# Problems named in the failure message; the total is always given.
MAX_REPORTED = 8


@dataclass
class Examples:
    """The checked examples of a file, in file order, with the line each came from."""

    kind: Literal["text", "chat", "completion"]
    lines: list[int]
    items: list[str] | list[list[dict[str, str]]]
    digest: str
    source: str
    skipped: list[str] = field(default_factory=list)


@dataclass
class Tokenized:
    """Token ids of each example, and what the length policy did."""

    ids: list[list[int]]
    lines: list[int]
    truncated: int = 0
    tokens: int = 0


def _content(m: dict[str, Any], i: int) -> str:
    """A message's text: a string, or OpenAI's list of text parts ({"type": "text", "text": ...})."""
    content = m.get("content")
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not (
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            ):
                raise ValueError(
                    f'messages[{i}].content[{j}] must be a text part {{"type": "text", "text": ...}} '
                    "(images and audio cannot train a text model)"
                )
            texts.append(part["text"])
        return "".join(texts)
    if not isinstance(content, str):
        raise ValueError(f"messages[{i}].content must be a string, got {type(content).__name__}")
    return content


def _kind_of(obj: dict[str, Any]) -> str:
    found = [k for k, keys in KINDS.items() if all(key in obj for key in keys)]
    if len(found) != 1:
        raise ValueError(
            'expected one of a "text" field (text data), a "messages" field (chat data) or "prompt" and '
            '"completion" fields (completion data)'
        )
    return found[0]


def _check_line(obj: Any, kind: str | None) -> tuple[str, Any]:
    """(kind, item) of one parsed line, or raises ValueError saying what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if kind is None:
        kind = _kind_of(obj)
    if kind == "text":
        if "text" not in obj:
            raise ValueError('missing the "text" field (text data: {"text": "..."} on every line)')
        text = obj["text"]
        if not isinstance(text, str):
            raise ValueError(f'"text" must be a string, got {type(text).__name__}')
        if not text.strip():
            raise ValueError('"text" is empty')
        return kind, text
    if kind == "completion":
        for key in ("prompt", "completion"):
            if key not in obj:
                raise ValueError(
                    f'missing the "{key}" field (completion data: {{"prompt": "...", "completion": "..."}})'
                )
            if not isinstance(obj[key], str):
                raise ValueError(f'"{key}" must be a string, got {type(obj[key]).__name__}')
        if not obj["completion"].strip():
            raise ValueError('"completion" is empty')
        return kind, obj["prompt"] + obj["completion"]
    if "messages" not in obj:
        raise ValueError('missing the "messages" field (chat data: {"messages": [...]} on every line)')
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list of {"role", "content"} objects')
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}] must be an object with role and content")
        role = m.get("role")
        if role == "developer":  # OpenAI's newer name for the system message
            role = "system"
        if role not in CHAT_ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(CHAT_ROLES)}, got {role!r}")
        content = _content(m, i)
        if not content.strip() and role != "system":
            raise ValueError(f"messages[{i}].content is empty")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError('no "assistant" message: a chat example needs a reply to learn')
    return kind, out


def load(spec: FineTuneData, data_dir: Path) -> Examples:
    """Read and check the JSONL file of `spec` under `data_dir` (the data claim's mount)."""
    path = data_dir / spec.path
    where = f"spec.fineTune.data (claim {spec.claim_name}, path {spec.path})"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{where}: no such file; put the JSONL file there or fix spec.fineTune.data.path"
        )
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    kind: str | None = None if spec.format == "auto" else spec.format
    lines: list[int] = []
    items: list[Any] = []
    problems: list[str] = []
    total = 0
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue  # blank lines (and the final newline) separate nothing in JSONL
        total += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"line {number}: not UTF-8 (byte {exc.start + 1})")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        try:
            line_kind, item = _check_line(obj, kind)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        kind = line_kind  # auto: the first good line decides, every later line must match
        lines.append(number)
        items.append(item)
    if total == 0:
        raise DataValidationError(f"{where}: the file has no examples (it is empty or only blank lines)")
    expected = {
        "text": '{"text": "..."}',
        "chat": '{"messages": [{"role": ..., "content": ...}]}',
        "completion": '{"prompt": "...", "completion": "..."}',
    }.get(kind or "") or '{"text": ...}, {"messages": [...]} or {"prompt": ..., "completion": ...}'
    if len(problems) > spec.max_invalid_lines or not items:
        shown = "; ".join(problems[:MAX_REPORTED]) + ("; ..." if len(problems) > MAX_REPORTED else "")
        raise DataValidationError(
            f"{where}: {len(problems)} of {total} line(s) are not valid {kind or 'JSONL'} examples "
            f"(each line must be {expected}): {shown}. Fix those lines"
            + (", or allow some with spec.fineTune.data.maxInvalidLines" if items else "")
        )
    for p in problems:
        log.warning("left out (maxInvalidLines %d): %s", spec.max_invalid_lines, p)
    final: Literal["text", "chat", "completion"] = (
        "chat" if kind == "chat" else "completion" if kind == "completion" else "text"
    )
    return Examples(final, lines, items, digest, str(path), skipped=problems)


def tokenize(
    examples: Examples, tokenizer: Any, max_length: int, over_length: Literal["truncate", "refuse"]
) -> Tokenized:
    """Token ids of every example (text + EOS, or the chat template), with the length policy applied."""
    ids: list[list[int]] = []
    if examples.kind == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "spec.fineTune.data: chat data needs a chat template, and the base model's tokenizer has "
                "none (tokenizer_config.json chat_template); use text data or a base model with a template"
            )
        for messages in examples.items:
            out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=False)
            if isinstance(out, dict) or hasattr(out, "keys"):
                out = out["input_ids"]
            ids.append([int(t) for t in out])
    else:
        eos = tokenizer.eos_token_id
        bos = tokenizer.bos_token_id
        for text in examples.items:
            assert isinstance(text, str)
            t = [int(x) for x in tokenizer(text, add_special_tokens=False)["input_ids"]]
            if bos is not None and getattr(tokenizer, "add_bos_token", True):
                t = [int(bos), *t]
            ids.append([*t, int(eos)] if eos is not None else t)
    too_long = [(line, len(t)) for line, t in zip(examples.lines, ids, strict=True) if len(t) > max_length]
    if too_long and over_length == "refuse":
        shown = ", ".join(f"line {line} ({n} tokens)" for line, n in too_long[:MAX_REPORTED])
        raise DataValidationError(
            f"spec.fineTune.data: {len(too_long)} example(s) are longer than spec.fineTune.maxSequenceLength="
            f"{max_length} tokens: {shown}{', ...' if len(too_long) > MAX_REPORTED else ''}. Shorten them, "
            "raise maxSequenceLength, or set spec.fineTune.data.overLength: truncate"
        )
    kept: list[list[int]] = []
    lines: list[int] = []
    for line, t in zip(examples.lines, ids, strict=True):
        if len(t) < 2:
            # One token predicts nothing; the text check cannot see this (it depends on the tokenizer).
            raise DataValidationError(
                f"spec.fineTune.data: line {line} is a single token after tokenization; an example needs "
                "at least two tokens to train on"
            )
        kept.append(t[:max_length])
        lines.append(line)
    if too_long:
        log.warning(
            "%d example(s) longer than maxSequenceLength=%d were truncated (overLength: truncate), e.g. "
            "line %d had %d tokens",
            len(too_long),
            max_length,
            too_long[0][0],
            too_long[0][1],
        )
    return Tokenized(kept, lines, truncated=len(too_long), tokens=sum(len(t) for t in kept))
