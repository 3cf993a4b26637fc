"""Chat templates: messages to the prompt text a model was trained to continue.

The template is, in order: `LLMServeConfig.chatTemplate` (an override), the model's own (GGUF metadata
`tokenizer.chat_template`, or a Hugging Face tokenizer's `chat_template`), else `DEFAULT_CHAT_TEMPLATE`,
a plain transcript for base models that ship none (Gemma 3 270M's GGUF, a tiny fine-tune):

    <bos>System: ...
    User: ...
    Assistant:

With the default template generation also stops at `DEFAULT_TEMPLATE_STOP` ("\\nUser:"), where a base
model would go on to write the user's next turn. Templates run in jinja2's sandbox, with the variables
and helpers Hugging Face templates expect (`messages`, `add_generation_prompt`, `bos_token`,
`eos_token`, `raise_exception`, `strftime_now`, `tojson`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] | trim }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
DEFAULT_TEMPLATE_STOP = "\nUser:"


class TemplateError(Exception):
    """The template refused the messages (e.g. `raise_exception` on an unsupported role order)."""


@dataclass
class ChatTemplate:
    source: str
    origin: str  # "override" | "model" | "default"
    bos_token: str
    eos_token: str

    def __post_init__(self) -> None:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        def strftime_now(fmt: str) -> str:
            return datetime.datetime.now().strftime(fmt)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = strftime_now
        self._template = env.from_string(self.source)

    @property
    def stops(self) -> list[str]:
        return [DEFAULT_TEMPLATE_STOP] if self.origin == "default" else []

    def render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> str:
        from jinja2 import TemplateError as JinjaError

        try:
            text = self._template.render(
                **(extra or {}),
                messages=messages,
                add_generation_prompt=add_generation_prompt and not continue_final_message,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError:
            raise
        except JinjaError as exc:
            raise TemplateError(f"the chat template failed: {exc}") from None
        except Exception as exc:  # a template written for other message shapes (TypeError, KeyError, ...)
            raise TemplateError(f"the chat template failed: {type(exc).__name__}: {exc}") from None
        if continue_final_message:
            # The conversation continues the assistant's last message: cut what the template closes it with.
            last = messages[-1]["content"]
            cut = text.rfind(last)
            if cut >= 0:
                text = text[: cut + len(last)]
        return str(text)


def pick(override: str | None, from_model: str | None, bos_token: str, eos_token: str) -> ChatTemplate:
    if override:
        return ChatTemplate(override, "override", bos_token, eos_token)
    if from_model:
        return ChatTemplate(from_model, "model", bos_token, eos_token)
    return ChatTemplate(DEFAULT_CHAT_TEMPLATE, "default", bos_token, eos_token)
