"""Generate (chat completion) requests."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from contracts.content import Content, images_in
from contracts.envelope import Identifier, Name, Request
from contracts.response_format import ResponseFormat
from contracts.strict import StrictStruct, defstruct_fields

Role = Literal["system", "user", "assistant", "tool"]
# What the OpenAI and Anthropic APIs both accept as a function's name.
ToolName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
Penalty = Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]


class ToolCall(StrictStruct, frozen=True):
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


class ChatMessage(StrictStruct, frozen=True):
    role: Role
    # A string, or a list of text and image parts (images only in user messages).
    content: Content
    name: str | None = None
    # An assistant turn that asked for tools (its content may be empty).
    tool_calls: list[ToolCall] | None = None
    # A tool turn: the id of the call it answers.
    tool_call_id: str | None = None


class ToolSpec(StrictStruct, frozen=True):
    name: ToolName
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)  # JSON Schema


class NamedToolChoice(StrictStruct, frozen=True):
    """Make the model call this tool (one of the request's ``tools``)."""

    name: ToolName


# "auto": the model decides; "none": it answers in text; "required": it calls at least one
# tool; a NamedToolChoice: it calls that one.
ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class ChatOptions(StrictStruct, frozen=True, kw_only=True):
    """What a chat call may ask for besides its model and messages, defined once: the
    generate request and the batch chat body carry these fields, and the providers'
    ChatParams too. ``chat_options`` reads them out of any of those.

    GenerateRequest holds them without being a ChatOptions at run time (msgspec cannot
    give a struct two bases that both hold fields): read them with ``chat_options``,
    never through ``isinstance``.
    """

    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] | None = None
    stop: list[str] | None = None
    # Offered to the model; a provider without tool support refuses the request
    # (invalid_input), never drops them. Calls come back as ToolCallDelta chunks and in
    # GenerateResult.tool_calls (finish_reason "tool_calls").
    tools: list[ToolSpec] | None = None
    # Only with tools; None: the provider's default ("auto").
    tool_choice: ToolChoice | None = None
    # The sampling fields below are refused (invalid_input, naming the field) by a provider
    # that cannot honour them.
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    # The end user the request is made for, passed to providers that track abuse per user.
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    # JSON out: a provider that cannot honour it refuses the request; the worker checks
    # the answer and fails the job with output_invalid when it does not match.
    response_format: ResponseFormat | None = None


def chat_options(source: ChatOptions) -> dict[str, Any]:
    """The chat options ``source`` holds, by name: to build another holder of them."""
    return dict(zip(ChatOptions.__struct_fields__, _read_options(source), strict=True))


# Reads every option at once, in C: this runs for every generate job.
_read_options = operator.attrgetter(*ChatOptions.__struct_fields__)


if TYPE_CHECKING:

    class _ChatRequest(Request, ChatOptions, frozen=True, kw_only=True):
        """A request with the chat options, as the type checker sees it."""

else:
    # At run time msgspec cannot combine two bases that both hold fields (their slots
    # clash), so the chat options are added onto Request from ChatOptions' own fields:
    # still defined once, in ChatOptions.
    _ChatRequest = msgspec.defstruct(
        "_ChatRequest",
        defstruct_fields(ChatOptions),
        bases=(Request,),
        kw_only=True,
        frozen=True,
        module=__name__,
    )


class GenerateRequest(_ChatRequest, frozen=True, kw_only=True, tag="generate"):
    model: Name
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    # A provider name from the chat registry; None lets the worker route by model.
    provider: Name | None = None
    # With a session id the worker prepends the stored history and saves the new turns.
    session_id: Identifier | None = None
    # False: no deltas, only the final reply (callers that want the whole answer at once).
    stream: bool = True

    def __post_init__(self) -> None:
        _check_tool_choice(self.tools, self.tool_choice)
        for message in self.messages:
            _check_tool_turn(message)
            _check_parts(message)


def _check_tool_choice(tools: list[ToolSpec] | None, choice: ToolChoice | None) -> None:
    names = [tool.name for tool in tools or ()]
    if len(set(names)) != len(names):
        raise msgspec.ValidationError("`tools` names a tool twice")
    if choice is None:
        return
    if not names:
        raise msgspec.ValidationError("`tool_choice` is set but `tools` is empty")
    if isinstance(choice, NamedToolChoice) and choice.name not in names:
        raise msgspec.ValidationError(
            f"`tool_choice` names {choice.name!r}, which is not one of `tools`"
        )


def _check_tool_turn(message: ChatMessage) -> None:
    if message.role == "tool" and not message.tool_call_id:
        raise msgspec.ValidationError("a message with role 'tool' needs `tool_call_id`")
    if message.tool_calls and message.role != "assistant":
        raise msgspec.ValidationError("only an assistant message may hold `tool_calls`")


def _check_parts(message: ChatMessage) -> None:
    if message.role != "user" and images_in(message.content):
        raise msgspec.ValidationError(
            f"a message with role {message.role!r} may hold text parts only: images go in "
            "user messages"
        )
