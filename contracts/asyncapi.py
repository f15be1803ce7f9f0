"""AsyncAPI 3.0 document of the fleet's topics, generated from the Structs and the names in
``contracts.names`` (never written by hand): every topic, message, key and header, and how
a producer in another language gets its replies (docs/other-languages.md walks through it
with kcat)."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from contracts.codec import TOPIC_REQUEST_TYPES
from contracts.control import ControlMessage
from contracts.names import (
    BATCH_KIND,
    DEFAULT_NAMESPACE,
    JOB_KINDS,
    SCHEMA_VERSION,
    ContentType,
    DeadLetterReason,
    Header,
    batch_command_topic,
    batch_input_topic,
    batch_output_topic,
    batch_request_topic,
    batch_status_topic,
    control_topic,
    dead_letter_topic,
    lane_group,
    reply_topic,
    request_topic,
    shared_reply_topic,
    worker_group,
)
from contracts.replies import ReplyChunk
from contracts.schema import BATCH_RECORDS

ASYNCAPI_VERSION: Final = "3.0.0"
_KAFKA_BINDING: Final = "0.5.0"
_SCHEMAS: Final = "#/components/schemas/"


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


_CONTENT_TYPE: Final = _string(
    "How the value is encoded; msgpack when absent. Producers in other languages send JSON "
    "and get JSON replies.",
    enum=[ContentType.MSGPACK, ContentType.JSON],
)
_SIGNATURE: Final = _string(
    "HMAC-SHA256 of the exact value bytes with the tenant's key, hex. Needed where the "
    "workers verify tenants (`tenant_keys`)."
)
_TRACE: Final = {
    Header.TRACEPARENT: _string("W3C trace context, carried to the worker and its model call."),
    Header.TRACESTATE: _string("W3C trace state."),
}

# Header schemas per message family.
_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "RequestHeaders": {
        Header.CONTENT_TYPE: _CONTENT_TYPE,
        Header.REQUEST_ID: _string("The request id again (the key holds it too)."),
        Header.TENANT_SIGNATURE: _SIGNATURE,
        Header.TENANT: _string(
            "The body's tenant again, for the worker's fair queue (decision 0044); a record "
            "without it shares the tenant-less queue."
        ),
        Header.COST: _string(
            "The request's estimated cost, a whole number (contracts/job_cost.py: tokens, "
            "audio seconds or characters by kind); 1 when absent."
        ),
        **_TRACE,
    },
    "ReplyHeaders": {
        Header.CONTENT_TYPE: _CONTENT_TYPE,
        Header.REPLY_CLIENT: _string(
            "The `reply_to.client` of the request, when it named one: on a shared reply "
            "topic each client keeps the replies that carry its own id."
        ),
        Header.HEARTBEAT: _string(
            "Only on empty records a client writes to its own private reply topic to show "
            "it is alive: skip them."
        ),
    },
    "ControlHeaders": {Header.TENANT_SIGNATURE: _SIGNATURE},
    "DeadLetterHeaders": {
        Header.DLQ_REASON: _string(
            "Why the message was dead-lettered.", enum=[r.value for r in DeadLetterReason]
        ),
        Header.DLQ_DETAIL: _string("What happened, in words."),
        Header.DLQ_ERROR_CODE: _string("The error code of the last failure, when there was one."),
        Header.DLQ_SOURCE_TOPIC: _string("Where the message was read from."),
        Header.DLQ_SOURCE_PARTITION: _string("Its partition (decimal)."),
        Header.DLQ_SOURCE_OFFSET: _string("Its offset (decimal)."),
        Header.DLQ_ORIGINAL_BYTES: _string(
            "Only where the original did not fit beside these headers (it was near the "
            "broker's limit): its size in bytes (decimal); the value is then empty."
        ),
        Header.DLQ_ORIGINAL_SHA256: _string(
            "With fleet-dlq-original-bytes: the SHA-256 of the original value, hex."
        ),
        Header.CONTENT_TYPE: _CONTENT_TYPE,
        Header.TENANT_SIGNATURE: _SIGNATURE,
    },
}


def _pascal(kind: str) -> str:
    return kind.capitalize()


def _message(
    name: str,
    summary: str,
    payload: str,
    headers: str | None,
    key: str | None,
    content_type: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "summary": summary}
    if content_type is not None:
        message["contentType"] = content_type
    if headers is not None:
        message["headers"] = {"$ref": f"{_SCHEMAS}{headers}"}
    message["payload"] = {"$ref": f"{_SCHEMAS}{payload}"}
    if key is not None:
        message["bindings"] = {
            "kafka": {
                "key": {"type": "string", "description": key},
                "bindingVersion": _KAFKA_BINDING,
            }
        }
    return message


def _channel(
    address: str | None, description: str, messages: list[str], **extra: Any
) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        **extra,
    }


def _as_asyncapi_schema(node: Any) -> Any:
    """msgspec writes OpenAPI's discriminator object; an AsyncAPI schema names the property."""
    if isinstance(node, dict):
        out = {k: _as_asyncapi_schema(v) for k, v in node.items()}
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = out["discriminator"]["propertyName"]
        return out
    if isinstance(node, list):
        return [_as_asyncapi_schema(v) for v in node]
    return node


def _batch_pascal(record: str) -> str:
    """``batch_status`` -> ``BatchStatus``."""
    return "".join(part.capitalize() for part in record.split("_"))


def _schemas() -> dict[str, Any]:
    names = [f"{_pascal(kind)}Requests" for kind in TOPIC_REQUEST_TYPES]
    names += ["ReplyChunk", "ControlMessages"]
    names += [f"{_batch_pascal(record)}Records" for record in BATCH_RECORDS]
    types: list[Any] = [*TOPIC_REQUEST_TYPES.values(), ReplyChunk, ControlMessage]
    types += BATCH_RECORDS.values()
    roots, components = msgspec.json.schema_components(types, ref_template=_SCHEMAS + "{name}")
    schemas = dict(components)
    schemas.update(zip(names, roots, strict=True))
    for name, headers in _HEADERS.items():
        schemas[name] = {"type": "object", "properties": headers}
    schemas["DeadLetter"] = {
        "description": "The original message's bytes, unchanged (it may not decode at all).",
    }
    return {name: _as_asyncapi_schema(schema) for name, schema in schemas.items()}


def asyncapi_document(namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    key = "The request id: every record of one request (and of its reply) has it as its key."
    for kind in JOB_KINDS:
        name = f"{kind}Request"
        messages[name] = _message(
            name, f"A {kind} job.", f"{_pascal(kind)}Requests", "RequestHeaders", key
        )
        channels[f"{kind}Requests"] = _channel(
            request_topic(kind, namespace),
            f"{_pascal(kind)} jobs, read by the {kind} workers' consumer group "
            f"`{worker_group(kind, namespace)}`. Set `reply_to` to get replies (see `replies`).",
            [name],
        )
        channels[f"{kind}BatchRequests"] = _channel(
            batch_request_topic(kind, namespace),
            f"The batch lane of {kind} jobs: the same requests and replies, read by the "
            f"group `{lane_group(worker_group(kind, namespace), 'batch')}`. Workers serve it "
            f"only with what interactive {kind} jobs leave, so send bulk work here, not to "
            f"`{kind}Requests`. Cancel through `{kind}Control` as for any {kind} job.",
            [name],
        )
        channels[f"{kind}Control"] = _channel(
            control_topic(kind, namespace),
            f"Cancellations of {kind} jobs; every {kind} worker reads all of it.",
            ["cancelJob"],
        )
        channels[f"{kind}DeadLetters"] = _channel(
            dead_letter_topic(kind, namespace),
            f"{_pascal(kind)} messages that could not be processed, with the reason in the "
            "headers (`fleet dlq list`, `fleet dlq replay`).",
            ["deadLetter"],
        )
        pascal = _pascal(kind)
        for operation, channel, summary in (
            (
                f"send{pascal}Request",
                f"{kind}Requests",
                f"A producer sends a {kind} job and reads its reply chunks.",
            ),
            (
                f"send{pascal}BatchRequest",
                f"{kind}BatchRequests",
                f"A producer sends a {kind} job on the batch lane and reads its reply chunks.",
            ),
        ):
            operations[operation] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": summary,
                "reply": {
                    "address": {
                        "location": "$message.payload#/reply_to/topic",
                        "description": "The topic the request's `reply_to` names.",
                    },
                    "channel": {"$ref": "#/channels/replies"},
                },
            }
    messages["replyChunk"] = _message(
        "replyChunk",
        "One chunk of a reply: deltas or segments in order (seq from 0 within an attempt), "
        "then one final chunk (a result or an error). A higher `attempt` restarts the stream.",
        "ReplyChunk",
        "ReplyHeaders",
        key,
    )
    messages["cancelJob"] = _message(
        "cancelJob", "Stop (or never start) a job.", "ControlMessages", "ControlHeaders", key
    )
    messages["deadLetter"] = _message(
        "deadLetter", "A message the fleet gave up on.", "DeadLetter", "DeadLetterHeaders", None
    )
    private = reply_topic("{clientId}", namespace)
    shared = shared_reply_topic("{service}", namespace)
    channels["replies"] = _channel(
        None,
        f"Wherever a request's `reply_to` points: a private topic ({private}), or a shared "
        f"one ({shared}). Workers reply to no other topics unless configured to.",
        ["replyChunk"],
    )
    channels["privateReplies"] = _channel(
        private,
        "The reply topic of one client, created (one partition) and deleted by it. Clients "
        "that may not create topics use a shared one.",
        ["replyChunk"],
        parameters={"clientId": {"description": "The client's id."}},
    )
    channels["sharedReplies"] = _channel(
        shared,
        "A reply topic the instances of one service share, created beforehand. A client "
        "sets `reply_to.client` to an id of its own and keeps the records whose "
        f"`{Header.REPLY_CLIENT}` header carries it (or those whose key is one of its "
        "request ids).",
        ["replyChunk"],
        parameters={"service": {"description": "The service's name."}},
    )
    operations["receiveReplies"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/replies"},
        "summary": "A producer reads the reply chunks of its requests.",
    }
    _batch_channels(namespace, channels, messages, operations)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "AI job fleet",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "Generate, embed, transcribe, vector, rerank and speech jobs over Kafka. Values "
                "are msgpack, or JSON with `content-type: application/json`; keys are request "
                "ids."
            ),
        },
        "defaultContentType": ContentType.JSON,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _schemas()},
    }


def _batch_channels(
    namespace: str,
    channels: dict[str, Any],
    messages: dict[str, Any],
    operations: dict[str, Any],
) -> None:
    """The batch topics (docs/decisions/0020-batch-jobs.md): records the Python SDK and the
    coordinators exchange, msgpack only and without headers, described so that other
    tools can read them."""
    batch_key = "The batch id."
    one_batch = {"batchId": {"description": "The batch id."}}
    batches = (
        (
            "batch_commands",
            batch_command_topic(namespace),
            "A submit, cancel or retry of a batch.",
            "Submits, cancels and retries of batches, read by the coordinators' group "
            f"`{worker_group(BATCH_KIND, namespace)}`.",
            batch_key,
        ),
        (
            "batch_status",
            batch_status_topic(namespace),
            "A batch's status.",
            "Every batch's status (OpenAI's lifecycle and request counts), compacted: the "
            "last record of a key is the batch's status now.",
            batch_key,
        ),
        (
            "batch_input",
            batch_input_topic("{batchId}", namespace),
            "A page of a batch's rows.",
            "One batch's rows in numbered pages, written by the submitting client before "
            "its submit command; one partition.",
            None,
        ),
        (
            "batch_output",
            batch_output_topic("{batchId}", namespace),
            "The results of a page's rows in one round.",
            "One batch's row results, page by page and round by round, written by its "
            "coordinator; within a round the first result of a row counts.",
            None,
        ),
    )
    for record, address, summary, description, key in batches:
        pascal = _batch_pascal(record)
        name = pascal[0].lower() + pascal[1:]  # batch_status -> batchStatus
        payload = f"{pascal}Records"
        messages[name] = _message(name, summary, payload, None, key, ContentType.MSGPACK)
        extra = {"parameters": one_batch} if "{batchId}" in address else {}
        channels[name] = _channel(address, description, [name], **extra)
    operations["sendBatchCommand"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/batchCommands"},
        "summary": "A client submits, cancels or retries a batch (`fleet batch`).",
    }
    operations["receiveBatchStatus"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/batchStatus"},
        "summary": "A client follows the status of its batches.",
    }


def asyncapi_text(namespace: str = DEFAULT_NAMESPACE) -> str:
    document = msgspec.json.encode(asyncapi_document(namespace))
    return msgspec.json.format(document, indent=2).decode() + "\n"
