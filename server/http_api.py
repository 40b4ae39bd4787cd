"""HTTP endpoints: whole-file encode and decode, codec info, health, metrics."""

import asyncio
import io
from typing import Annotated, Any

import numpy as np
import soundfile
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from hopcodec.cli import codec_info
from server.auth import is_authorized
from server.pcm import MAX_RATE, MIN_RATE
from server.service import Service
from streaming_core.audio_io import from_codec_rate, to_codec_rate
from streaming_core.bitstream import MAX_FRAMES_PER_PACKET, FileHeader, read_coded_file, write_coded_file
from streaming_core.codec import FILE_FRAMES_PER_PACKET, decode_packets, encode_audio
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.errors import BitstreamError
from streaming_core.modes import DEFAULT_MODE, get_mode

router = APIRouter()
AUDIO_BODY = {"requestBody": {"required": True, "content": {
    "audio/wav": {"schema": {"type": "string", "format": "binary"}},
    "audio/flac": {"schema": {"type": "string", "format": "binary"}}}}}
HOP_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def service_of(request: Request) -> Service:
    """The service the app was created with."""
    return request.app.state.service


def require_token(request: Request) -> None:
    """401 unless the request carries the configured token (when there is one)."""
    token = service_of(request).settings.token
    if not is_authorized(token, request.headers, request.query_params):
        raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})


Authorized = Annotated[None, Depends(require_token)]


async def read_upload(request: Request) -> bytes:
    """The request body, refused with 413 past the upload limit (before reading it all)."""
    limit = service_of(request).settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload of {declared} bytes, at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload larger than {limit} bytes")
        chunks.append(chunk)
    if not size:
        raise HTTPException(422, "empty body: send the file's bytes as the request body")
    return b"".join(chunks)


def _read_audio(body: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and rate of WAV/FLAC/... bytes; HTTP errors for bad ones."""
    try:
        info = soundfile.info(io.BytesIO(body))
        if info.frames > max_seconds * info.samplerate:
            seconds = info.frames / info.samplerate
            raise HTTPException(413, f"audio of {seconds:.1f} s, at most {max_seconds:g} s")
        samples, rate = soundfile.read(io.BytesIO(body), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise HTTPException(415, f"not a readable audio file (WAV, FLAC, ...): {error}") from None
    if samples.size == 0:
        raise HTTPException(422, "the file contains no audio samples")
    if not np.all(np.isfinite(samples)):
        raise HTTPException(422, "the file contains NaN or infinite samples")
    return samples, int(rate)


def _encode(body: bytes, mode: str, frames_per_packet: int, max_seconds: float) -> bytes:
    samples, rate = _read_audio(body, max_seconds)
    packets = encode_audio(to_codec_rate(samples, rate), mode, frames_per_packet=frames_per_packet)
    return write_coded_file(FileHeader(get_mode(mode), rate, len(samples)), packets)


def _decode(coded: bytes, service: Service, rate: int | None) -> tuple[bytes, int]:
    try:
        header, packets = read_coded_file(coded)
    except BitstreamError as error:
        raise HTTPException(422, f"not a valid .hop file: {error}") from None
    frames = sum(packet.frame_count for packet in packets)
    max_seconds = service.settings.max_upload_seconds
    if frames * HOP > max_seconds * SAMPLE_RATE:
        raise HTTPException(413, f"decodes to {frames * HOP / SAMPLE_RATE:.1f} s, at most {max_seconds:g} s")
    out_rate = rate or header.sample_rate
    n_samples = frames * HOP
    if header.input_samples is not None:
        n_samples = min(n_samples, round(header.input_samples * SAMPLE_RATE / header.sample_rate))
    audio = from_codec_rate(decode_packets(packets, n_samples, service.synthesizer), out_rate)
    if header.input_samples is not None and out_rate == header.sample_rate:
        audio = np.pad(audio, (0, max(header.input_samples - len(audio), 0)))[: header.input_samples]
    wav = io.BytesIO()
    soundfile.write(wav, np.clip(audio, -1.0, 1.0), out_rate, subtype="PCM_16", format="WAV")
    return wav.getvalue(), out_rate


async def _upload_work(request: Request, function: Any, *args: Any) -> Any:
    """Read the body and run `function(body, *args)` in the upload thread, at most
    `max_uploads` requests at once (503 beyond)."""
    service = service_of(request)
    if service.uploads_open >= service.settings.max_uploads:
        raise HTTPException(503, f"{service.uploads_open} uploads in progress, try again later",
                            headers={"Retry-After": "1"})
    service.uploads_open += 1
    try:
        body = await read_upload(request)
        return await asyncio.get_running_loop().run_in_executor(service.uploads, function, body, *args)
    finally:
        service.uploads_open -= 1


@router.post("/v1/encode", openapi_extra=AUDIO_BODY, response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}}, "description": ".hop file"}})
async def encode_file(
    request: Request,
    _: Authorized,
    mode: Annotated[str, Query(description="mode name (GET /v1/info); 'default': the best "
                               "installed")] = DEFAULT_MODE,
    frames_per_packet: Annotated[int, Query(ge=1, le=MAX_FRAMES_PER_PACKET)] = FILE_FRAMES_PER_PACKET,
) -> Response:
    """Encode a whole WAV/FLAC file (any rate, any channels) to a .hop file."""
    service = service_of(request)
    try:
        mode = get_mode(mode).name
    except KeyError as error:
        raise HTTPException(422, error.args[0]) from None
    max_seconds = service.settings.max_upload_seconds
    coded = await _upload_work(request, _encode, mode, frames_per_packet, max_seconds)
    return Response(coded, media_type="application/octet-stream", headers={"X-Hopcodec-Mode": mode})


@router.post("/v1/decode", openapi_extra=HOP_BODY, response_class=Response,
             responses={200: {"content": {"audio/wav": {}}, "description": "16-bit PCM WAV"}})
async def decode_file(
    request: Request,
    _: Authorized,
    rate: Annotated[int | None, Query(ge=MIN_RATE, le=MAX_RATE, description="output rate; "
                                      "default: the original input's")] = None,
) -> Response:
    """Decode a whole .hop file to a 16-bit WAV."""
    service = service_of(request)
    wav, out_rate = await _upload_work(request, _decode, service, rate)
    return Response(wav, media_type="audio/wav", headers={"X-Sample-Rate": str(out_rate)})


@router.get("/v1/info")
async def info(request: Request, _: Authorized) -> dict[str, Any]:
    """Modes, rates, hop, algorithmic latency, the decoder in use and this server's limits."""
    service = service_of(request)
    return {**codec_info(), "synthesizer": service.synthesizer_name,
            "model_version": service.model_version, "limits": service.settings.public(),
            "auth": service.settings.token is not None}


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    """Liveness: the process answers and how many streams it holds."""
    slots = service_of(request).slots
    return {"status": "ok", "streams_open": slots.open, "max_streams": slots.maximum}


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    registry = service_of(request).metrics
    return Response(registry.render(), media_type=registry.content_type)
