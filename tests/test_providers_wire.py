"""The providers' pure cores: wire decoders (any bytes decode or raise our error), SSE, breaker, sealing, limits."""

from __future__ import annotations

import ast
import base64
import itertools
import json
import pickle
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from auralink.agents import providers
from auralink.agents.providers import (
    BreakerPolicy,
    BreakerState,
    ChatMessage,
    ChatRequest,
    CircuitBreaker,
    KeySealer,
    PlanLimits,
    Usage,
    parse_tenant_config,
)
from auralink.agents.providers.config import SEALING_KEY_ENV, SealedKey, limit_reached, period_start
from auralink.agents.providers.wire import (
    ChatStreamDecoder,
    ServerSentEvent,
    ServerSentEventDecoder,
    build_ssml,
    decode_azure_recognition,
    decode_chat_chunk,
    decode_chat_completion,
    decode_error_body,
    decode_google_recognition,
    decode_google_synthesis,
    decode_transcription,
    encode_chat_request,
    error_for_status,
    parse_google_duration,
    parse_retry_after,
    wav_info,
)
from auralink.errors import (
    AuralinkError,
    ConfigError,
    LocalProtocolError,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    ProviderQuotaExhausted,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    RemoteProtocolError,
    SealedKeyError,
)
from auralink.identity import Identity
from tests.provider_servers import make_wav

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-proj-SECRET-4b1f9e27c3a85d60"

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def shaped(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of the documented keys, each holding a plausible or an arbitrary value."""
    return st.fixed_dictionaries({}, optional={name: value | json_values for name, value in fields.items()})


def encoded(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return documents.map(lambda d: json.dumps(d).encode())


counts = st.integers(-3, 10**6)
chat_completions = shaped(
    model=st.text(max_size=10),
    choices=st.lists(
        shaped(
            message=shaped(role=st.just("assistant"), content=st.text(max_size=20) | st.none()),
            finish_reason=st.sampled_from(["stop", "length"]) | st.none(),
        ),
        max_size=2,
    ),
    usage=shaped(prompt_tokens=counts, completion_tokens=counts),
)
chat_chunks = shaped(
    choices=st.lists(shaped(delta=shaped(content=st.text(max_size=8)), finish_reason=st.just("stop")), max_size=2),
    usage=shaped(prompt_tokens=counts, completion_tokens=counts) | st.none(),
    error=shaped(message=st.text(max_size=10)),
)
transcriptions = shaped(
    text=st.text(max_size=20),
    language=st.text(max_size=8),
    duration=st.floats(-1, 100),
    usage=shaped(type=st.sampled_from(["duration", "tokens"]), seconds=st.floats(-1, 10), input_tokens=counts),
)
azure_results = shaped(
    RecognitionStatus=st.sampled_from(["Success", "NoMatch", "InitialSilenceTimeout", "BabbleTimeout", "Error", "?"]),
    DisplayText=st.text(max_size=20),
    Duration=st.integers(-5, 10**9) | st.from_regex(r"\A[0-9]{1,25}\Z"),
    NBest=st.lists(shaped(Confidence=st.floats(-1, 2), Display=st.text(max_size=10)), max_size=2),
)
google_results = shaped(
    results=st.lists(
        shaped(
            alternatives=st.lists(shaped(transcript=st.text(max_size=10), confidence=st.floats(-1, 2)), max_size=2),
            languageCode=st.text(max_size=5),
        ),
        max_size=3,
    ),
    totalBilledTime=st.from_regex(r"\A-?[0-9]{1,14}(\.[0-9]{0,10})?s?\Z"),
)
google_syntheses = shaped(audioContent=st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()) | st.text())

# Decoders, each with what it may raise besides ProviderProtocolError (a well-formed report of a failure).
DECODERS = {
    "chat completion": (decode_chat_completion, chat_completions, ()),
    "chat chunk": (lambda b: decode_chat_chunk(b.decode("utf-8", "replace")), chat_chunks, (ProviderUnavailable,)),
    "transcription": (lambda b: decode_transcription(b, audio_seconds=1.0), transcriptions, ()),
    "azure recognition": (decode_azure_recognition, azure_results, (ProviderUnavailable,)),
    "google recognition": (decode_google_recognition, google_results, ()),
    "google synthesis": (decode_google_synthesis, google_syntheses, ()),
}


def check_result(result: object) -> None:
    usage = getattr(result, "usage", None)
    if usage is not None:
        for value in (usage.input_tokens, usage.output_tokens, usage.audio_seconds, usage.characters):
            assert value >= 0 and not isinstance(value, bool)
    text = getattr(result, "text", None)
    assert text is None or isinstance(text, str)
    confidence = getattr(result, "confidence", None)
    assert confidence is None or 0.0 <= confidence <= 1.0


def decode_or_raise(name: str, body: bytes) -> None:
    decode, _, also = DECODERS[name]
    try:
        result = decode(body)
    except ProviderProtocolError as exc:
        assert isinstance(exc, RemoteProtocolError) and exc.args[0]
    except also:
        pass
    else:
        check_result(result)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=60)
@given(data=st.data())
def test_any_bytes_either_decode_or_raise_our_protocol_error(name: str, data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=512) | encoded(json_values) | encoded(DECODERS[name][1]))
    decode_or_raise(name, body)


def test_deeply_nested_json_is_a_protocol_error_not_a_recursion_error() -> None:
    with pytest.raises(ProviderProtocolError):
        decode_chat_completion(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ProviderProtocolError):
        decode_transcription(b'{"text": "x", "duration": NaN}')


def test_documented_examples_decode() -> None:
    result = decode_chat_completion(
        json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
            }
        ).encode(),
        provider="openai",
    )
    assert (result.text, result.model, result.finish_reason) == ("Hi", "gpt-4o-mini", "stop")
    assert result.usage == Usage(9, 12)
    azure = decode_azure_recognition(
        b'{"RecognitionStatus": "Success", "DisplayText": "Remind me to buy 5 pencils.", '
        b'"Offset": "1236645672289", "Duration": "1236645672289"}'
    )
    assert azure.text == "Remind me to buy 5 pencils." and azure.usage.audio_seconds == pytest.approx(123664.5672289)
    silent = decode_azure_recognition(b'{"RecognitionStatus": "InitialSilenceTimeout", "Offset": 0, "Duration": 0}')
    assert silent.text == ""
    with pytest.raises(ProviderUnavailable):
        decode_azure_recognition(b'{"RecognitionStatus": "Error"}')
    assert decode_google_recognition(b"{}").text == ""
    assert parse_google_duration("3s") == 3.0 and parse_google_duration("1.500s") == 1.5
    whisper = decode_transcription(b'{"text": " hi ", "usage": {"type": "duration", "seconds": 9}}')
    assert whisper.text == "hi" and whisper.usage == Usage(audio_seconds=9.0)


# ---------------------------------------------------------------------------------------------
# Server-sent events

sse_tokens = st.sampled_from(
    [b"data:", b"data: ", b"event: error", b"id: 7", b"retry: 10", b": ping", b"\r", b"\n", b"\r\n", b"x",
     b"\xef\xbb\xbf", b"[DONE]", b"\xff", b'{"choices": []}', b"\xc3\xa9", b"\x00"]
)  # fmt: skip
sse_streams = st.lists(sse_tokens, max_size=30).map(b"".join) | st.binary(max_size=200)


def run_sse(chunks: list[bytes]) -> list[ServerSentEvent] | type[ProviderProtocolError]:
    decoder = ServerSentEventDecoder(max_line=64)
    events: list[ServerSentEvent] = []
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
        events += decoder.close()
    except ProviderProtocolError:
        return ProviderProtocolError
    return events


@given(stream=sse_streams, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_sse_decodes_the_same_whole_split_anywhere_or_byte_at_a_time(stream: bytes, cuts: list[int]) -> None:
    whole = run_sse([stream])
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    assert run_sse([stream[a:b] for a, b in itertools.pairwise(bounds)]) == whole
    assert run_sse([stream[i : i + 1] for i in range(len(stream))]) == whole


@given(
    events=st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=8),
            st.lists(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=10),
                     min_size=1, max_size=3),
        ),
        max_size=5,
    ),
    newline=st.sampled_from(["\n", "\r", "\r\n"]),
)  # fmt: skip
def test_sse_round_trips_events(events: list[tuple[str, list[str]]], newline: str) -> None:
    text = ""
    for kind, lines in events:
        if kind:
            text += f"event: {kind}{newline}"
        text += "".join(f"data: {line}{newline}" for line in lines) + newline
    decoded = ServerSentEventDecoder().feed(text.encode())
    assert [(e.event, e.data) for e in decoded] == [(k or "message", "\n".join(lines)) for k, lines in events]


def test_sse_follows_the_whatwg_rules() -> None:
    stream = b"\xef\xbb\xbf: comment\r\ndata:no space\r\ndata:  two spaces\r\n\r\nevent: x\rdata\r\r"
    events = ServerSentEventDecoder().feed(stream)
    assert events == [ServerSentEvent("no space\n two spaces"), ServerSentEvent("", "x")]
    assert ServerSentEventDecoder().feed(b"data: unterminated") == []
    with pytest.raises(ProviderProtocolError):
        ServerSentEventDecoder(max_line=8).feed(b"data: " + b"x" * 20)


@given(stream=sse_streams | st.lists(st.sampled_from([b"data: ", b'{"choices": [{"delta": {"content": "a"}}]}',
                                                      b"\n\n", b"data: [DONE]", b'{"choices": []}']),
                                     max_size=12).map(b"".join))  # fmt: skip
def test_chat_stream_decoder_parses_or_raises_split_anywhere(stream: bytes) -> None:
    def run(chunks: list[bytes]) -> list[str] | str:
        decoder = ChatStreamDecoder()
        texts: list[str] = []
        try:
            for chunk in chunks:
                texts += [c.text for c in decoder.feed(chunk)]
            decoder.close()
        except ProviderError as exc:
            assert isinstance(exc, ProviderProtocolError | ProviderUnavailable)
            return type(exc).__name__
        return texts

    assert run([stream[i : i + 1] for i in range(len(stream))]) == run([stream])


# ---------------------------------------------------------------------------------------------
# Error bodies, statuses, Retry-After


DIALECTS = st.sampled_from(["openai", "elevenlabs", "azure", "google"])


@given(body=st.binary(max_size=300) | encoded(json_values), dialect=DIALECTS, status=st.integers(100, 599))
def test_error_bodies_never_raise_and_statuses_map_into_our_tree(body: bytes, dialect: Any, status: int) -> None:
    info = decode_error_body(dialect, body)
    assert isinstance(info.message, str) and len(info.message) <= 300
    error = error_for_status("p", dialect, status, body + SECRET.encode(), secrets=[SECRET])
    assert isinstance(error, ProviderError)
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    ("dialect", "status", "body", "expected"),
    [
        ("openai", 401, b'{"error": {"message": "Incorrect API key", "type": "invalid_request_error", '
                        b'"code": "invalid_api_key"}}', ProviderAuthFailed),
        ("openai", 429, b'{"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}',
         ProviderQuotaExhausted),
        ("openai", 429, b'{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}',
         RateLimited),
        ("openai", 400, b'{"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}',
         ProviderRejected),
        ("openai", 503, b"upstream connect error", ProviderUnavailable),
        ("elevenlabs", 401, b'{"detail": {"status": "quota_exceeded", "message": "out of credits"}}',
         ProviderQuotaExhausted),
        ("elevenlabs", 401, b'{"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}',
         ProviderAuthFailed),
        ("elevenlabs", 422, b'{"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]}',
         ProviderRejected),
        ("azure", 401, b"", ProviderAuthFailed),
        ("azure", 415, b"", ProviderRejected),
        ("google", 400, b'{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT", '
                        b'"details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": '
                        b'"API_KEY_INVALID"}]}}', ProviderAuthFailed),
        ("google", 429, b'{"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}}', RateLimited),
        ("google", 302, b"", ProviderProtocolError),
    ],
)  # fmt: skip
def test_documented_error_bodies_map_to_the_right_error(
    dialect: Any, status: int, body: bytes, expected: type[ProviderError]
) -> None:
    error = error_for_status("prov", dialect, status, body)
    assert type(error) is expected
    assert error.provider == "prov" and error.status == status


def test_error_messages_are_scrubbed_and_quoted() -> None:
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}.\n", "code": "invalid_api_key"}})
    error = error_for_status("openai", "openai", 401, body.encode(), secrets=[SECRET])
    assert SECRET not in str(error) and "***" in str(error) and "invalid_api_key" in str(error)
    validation = decode_error_body(
        "elevenlabs", b'{"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]}'
    )
    assert validation.message == "body.text: Field required"


@given(headers=st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "date"]), st.text(max_size=40)))
def test_retry_after_never_raises(headers: dict[str, str]) -> None:
    value = parse_retry_after(headers)
    assert value is None or value >= 0


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "20"}) == 20.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "20"}) == 1.5
    date = {"date": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert parse_retry_after({**date, "retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}) == 30.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}) is None  # no Date to measure from
    assert parse_retry_after({"retry-after": "soon"}) is None


# ---------------------------------------------------------------------------------------------
# Encoders, SSML, WAV


def test_chat_request_encoding() -> None:
    request = ChatRequest((ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")), None, 0.2, 50)
    body = encode_chat_request(request, model="m", stream=True)
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "max_tokens": 50,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert "stream_options" not in encode_chat_request(request, model="m", stream=True, stream_usage=False)


@given(text=st.text(max_size=60))
def test_ssml_is_well_formed_for_any_text(text: str) -> None:
    root = ElementTree.fromstring(build_ssml(text, voice="en-US-Ava'<\"Neural", language="en-US"))
    voice = root.find("{http://www.w3.org/2001/10/synthesis}voice")
    assert voice is not None and voice.get("name") == "en-US-Ava'<\"Neural"
    kept = "".join(ch for ch in text if ch in "\t\n\r" or (ord(ch) >= 0x20 and ord(ch) not in (0xFFFE, 0xFFFF)))
    kept = "".join(ch for ch in kept if not 0xD800 <= ord(ch) <= 0xDFFF)
    assert (voice.text or "") == kept.replace("\r\n", "\n").replace("\r", "\n")


@given(audio=st.binary(max_size=200) | st.binary(max_size=60).map(lambda b: b"RIFF\x00\x00\x00\x00WAVE" + b))
def test_wav_info_never_raises(audio: bytes) -> None:
    info = wav_info(audio)
    assert info is None or info.duration >= 0


def test_wav_info_reads_real_headers() -> None:
    info = wav_info(make_wav(1.25, rate=16000))
    assert info is not None and (info.sample_rate, info.channels, info.bits_per_sample) == (16000, 1, 16)
    assert info.duration == pytest.approx(1.25)
    assert wav_info(make_wav(1.0)[:-16000]) is not None  # truncated: what is there is measured


# ---------------------------------------------------------------------------------------------
# The breaker, with explicit time


def test_breaker_opens_after_the_threshold_and_probes_once_after_the_cool_down() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=3, cool_down=10.0, max_cool_down=25.0))
    now = 100.0
    for _ in range(2):
        assert breaker.allow(now)
        breaker.on_failure(now)
    assert breaker.state(now) is BreakerState.CLOSED
    assert breaker.allow(now)
    breaker.on_failure(now)
    assert breaker.state(now) is BreakerState.OPEN and not breaker.allow(now + 9.99)
    assert breaker.get_timer() == 110.0 and breaker.retry_after(now + 4) == 6.0
    now = 110.0
    assert breaker.state(now) is BreakerState.HALF_OPEN
    assert breaker.allow(now) and not breaker.allow(now)  # one probe at a time
    breaker.on_failure(now)  # the probe failed: twice the cool-down
    assert breaker.state(now + 19.99) is BreakerState.OPEN and breaker.state(now + 20) is BreakerState.HALF_OPEN
    now += 20
    assert breaker.allow(now)
    breaker.on_failure(now)  # capped at max_cool_down
    assert breaker.get_timer() == now + 25.0
    now += 25
    assert breaker.allow(now)
    breaker.on_abandoned(now)  # a cancelled probe frees the slot
    assert breaker.allow(now)
    breaker.on_success(now)
    assert breaker.state(now) is BreakerState.CLOSED and breaker.consecutive_failures == 0
    breaker.on_failure(now)
    breaker.on_failure(now)
    breaker.on_success(now)  # a success resets the count
    breaker.on_failure(now)
    assert breaker.state(now) is BreakerState.CLOSED


def test_breaker_believes_retry_after_within_bounds() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=5, max_retry_after=60.0))
    breaker.on_failure(0.0, retry_after=12.5)
    assert breaker.state(12.4) is BreakerState.OPEN and breaker.state(12.5) is BreakerState.HALF_OPEN
    breaker.on_success(13.0)
    breaker.on_failure(20.0, retry_after=1e9)
    assert breaker.get_timer() == 80.0


def test_breaker_policy_is_validated() -> None:
    for bad in ({"failure_threshold": 0}, {"cool_down": -1.0}, {"cool_down": float("nan")}, {"max_cool_down": 1.0}):
        with pytest.raises(LocalProtocolError):
            BreakerPolicy(**bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Sealing and config


def test_sealed_keys_round_trip_and_never_show_the_key() -> None:
    sealer = KeySealer.generate()
    first, second = sealer.seal(SECRET), sealer.seal(SecretStr(SECRET))
    assert first.box != second.box  # fresh nonce each time
    assert sealer.unseal(first).get_secret_value() == SECRET == sealer.unseal(second).get_secret_value()
    opened = sealer.unseal(first)
    for text in (repr(first), str(first), repr(sealer), repr(opened), str(opened), first.model_dump_json()):
        assert SECRET not in text
    with pytest.raises(TypeError):
        pickle.dumps(sealer)


def test_a_box_opens_only_with_its_key_and_unaltered() -> None:
    sealer, other = KeySealer.generate(), KeySealer.generate()
    sealed = sealer.seal(SECRET)
    with pytest.raises(SealedKeyError, match=sealed.sealer):
        other.unseal(sealed)
    raw = bytearray(base64.b64decode(sealed.box))
    raw[-1] ^= 1
    with pytest.raises(SealedKeyError, match="altered"):
        sealer.unseal(SealedKey(sealer=sealed.sealer, box=base64.b64encode(bytes(raw)).decode()))
    with pytest.raises(SealedKeyError):
        sealer.unseal(SealedKey(sealer=sealed.sealer, box="not base64!"))
    assert isinstance(SealedKeyError("x"), ConfigError)


def test_sealing_keys_come_from_the_environment_or_the_identity() -> None:
    key = bytes(range(32))
    sealer = KeySealer.from_env({SEALING_KEY_ENV: base64.b64encode(key).decode()})
    assert sealer.fingerprint == KeySealer(key).fingerprint
    for environ, match in (({}, "not set"), ({SEALING_KEY_ENV: "%%%"}, "base64"), ({SEALING_KEY_ENV: "AAAA"}, "32")):
        with pytest.raises(ConfigError, match=match) as caught:
            KeySealer.from_env(environ)
        assert caught.value.field == SEALING_KEY_ENV
    alice, bob = Identity.from_seed(b"\x01" * 32), Identity.from_seed(b"\x02" * 32)
    assert KeySealer.from_identity(alice).fingerprint == KeySealer.from_identity(alice).fingerprint
    assert KeySealer.from_identity(alice).fingerprint != KeySealer.from_identity(bob).fingerprint
    with pytest.raises(ConfigError):
        KeySealer(b"short")


def tenant_document(**changes: Any) -> dict[str, Any]:
    sealed = KeySealer(bytes(32)).seal(SECRET).model_dump()
    document: dict[str, Any] = {
        "tenant_id": "acme",
        "providers": [
            {"kind": "openai-chat", "name": "openai", "model": "gpt-4o-mini", "api_key": sealed},
            {"kind": "azure-speech", "name": "azure", "region": "westeurope", "api_key": sealed},
        ],
        "chains": {"chat": ["openai"], "stt": ["azure"], "tts": ["azure"]},
    }
    document.update(changes)
    return document


def test_tenant_configs_validate_and_round_trip_as_json() -> None:
    config = parse_tenant_config(tenant_document())
    assert parse_tenant_config(config.model_dump_json()) == config
    local = {"kind": "openai-chat", "name": "ollama", "model": "llama3.2", "base_url": "http://192.168.1.20:11434/v1"}
    assert parse_tenant_config(tenant_document(providers=[local], chains={"chat": ["ollama"]})).providers[0] is not None
    assert SECRET not in config.model_dump_json() and SECRET not in repr(config)
    bad_documents = [
        (tenant_document(chains={"chat": ["nobody"]}), "not a provider"),
        (tenant_document(chains={"tts": ["openai"]}), "cannot serve tts"),
        (tenant_document(chains={"chat": ["openai", "openai"]}), "twice"),
        (tenant_document(limits={"max_tokens": 5, "on_exceeded": "switch"}), "only throttle"),
        (tenant_document(extra=1), "extra"),
        (tenant_document(tenant_id="no spaces"), "tenant_id"),
        (tenant_document(providers=[{"kind": "azure-speech", "name": "azure"}]), "region"),
        (
            tenant_document(providers=[{"kind": "openai-chat", "name": "o", "model": "m", "base_url": "ftp://x/v1"}]),
            "http",
        ),
        (
            tenant_document(
                providers=[
                    {
                        "kind": "openai-chat",
                        "name": "o",
                        "model": "m",
                        "base_url": "http://10.0.0.5/v1",
                        "api_key": KeySealer(bytes(32)).seal(SECRET).model_dump(),
                    }
                ]
            ),
            "only sent over https",
        ),
    ]
    for document, match in bad_documents:
        with pytest.raises(ConfigError, match=match):
            parse_tenant_config(document)


def test_a_plain_key_where_a_sealed_one_belongs_is_refused_without_echoing_it() -> None:
    document = tenant_document()
    document["providers"][0]["api_key"] = SECRET
    with pytest.raises(ConfigError) as caught:
        parse_tenant_config(document)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_limits_and_periods() -> None:
    jan_15 = 1_768_435_200.0  # 2026-01-15 00:00 UTC
    assert period_start("month", jan_15 + 3600) == 1_767_225_600.0  # 2026-01-01
    assert period_start("day", jan_15 + 3600) == jan_15
    limits = PlanLimits(max_tokens=100, max_characters=50)
    assert limit_reached(limits, Usage(60, 39), Usage()) is None
    assert limit_reached(limits, Usage(60, 40), Usage()) == ("tokens", 100.0)
    assert limit_reached(limits, Usage(characters=40), Usage(characters=10)) is None
    assert limit_reached(limits, Usage(characters=40), Usage(characters=11)) == ("characters", 50.0)


# ---------------------------------------------------------------------------------------------
# Layering and the public API


def test_pure_cores_import_no_io_or_clock() -> None:
    for name in ("wire.py", "breaker.py", "types.py"):
        tree = ast.parse((ROOT / "auralink/agents/providers" / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"asyncio", "socket", "time", "threading", "httpx", "random"}, name


def test_provider_errors_are_ours() -> None:
    for error in (ProviderProtocolError("x"), RateLimited("x"), ProviderRejected("x"), SealedKeyError("x")):
        assert isinstance(error, AuralinkError)
    assert issubclass(ProviderProtocolError, RemoteProtocolError)


def test_public_api_snapshot() -> None:
    assert sorted(providers.__all__) == sorted(
        [
            "SEALING_KEY_ENV", "AzureSpeechConfig", "AzureSpeechToText", "AzureTextToSpeech", "BreakerPolicy",
            "BreakerState", "Capability", "Chains", "ChatChunk", "ChatMessage", "ChatModel", "ChatRequest",
            "ChatResult", "CircuitBreaker", "ElevenLabsConfig", "ElevenLabsTTS", "GoogleSpeechConfig",
            "GoogleSpeechToText", "GoogleTextToSpeech", "KeySealer", "OpenAIChat", "OpenAIChatConfig",
            "OpenAITranscriber", "PlanLimits", "ProviderConfig", "ProviderRouter", "ProviderStore", "SealedKey",
            "SpeechAudio", "SpeechToText", "TenantConfig", "TextToSpeech", "Transcript", "Usage", "WhisperConfig",
            "parse_tenant_config",
        ]
    )  # fmt: skip
    for name in providers.__all__:
        assert hasattr(providers, name), name
