"""Audio devices through sounddevice (PortAudio), with clear errors where there are none."""

from types import ModuleType
from typing import Any

from streaming_core.errors import HopcodecError

NO_DEVICE_HINT = ("no sound card? on a headless machine start a PulseAudio daemon with a virtual "
                  "microphone and speaker: scripts/ci_audio_setup.sh")


class AudioDeviceError(HopcodecError):
    """No usable audio device, or PortAudio missing."""


def load_sounddevice() -> ModuleType:
    """The sounddevice module; `AudioDeviceError` naming what to install when it cannot load."""
    try:
        import sounddevice
    except ImportError:
        raise AudioDeviceError("the mic client needs sounddevice: pip install 'hopcodec[client]'") from None
    except OSError as error:
        raise AudioDeviceError(f"PortAudio library not found ({error}); install it "
                               "(Debian/Ubuntu: apt-get install libportaudio2)") from None
    return sounddevice


def parse_device(spec: str | None) -> int | str | None:
    """A device given on the command line: an index, a name fragment, or None for the default."""
    if spec is None or spec == "":
        return None
    return int(spec) if spec.isdigit() else spec


def check_device(sd: ModuleType, spec: int | str | None, kind: str) -> dict[str, Any]:
    """The device that `spec` selects for `kind` ("input" or "output"), or `AudioDeviceError`."""
    try:
        info = sd.query_devices(spec, kind=kind)
    except (ValueError, sd.PortAudioError) as error:
        available = [d for d in sd.query_devices() if d[f"max_{kind}_channels"] > 0]
        if not available:
            raise AudioDeviceError(f"no audio {kind} device found: PortAudio sees none ({NO_DEVICE_HINT})") \
                from None
        names = "; ".join(f"{d['index']}: {d['name']}" for d in available)
        which = "default" if spec is None else repr(spec)
        raise AudioDeviceError(f"{kind} device {which} not usable ({error}); {kind} devices: {names}") \
            from None
    return dict(info)


def describe_devices(sd: ModuleType) -> str:
    """The device list `hopcodec mic --list-devices` prints."""
    devices = sd.query_devices()
    if len(devices) == 0:
        return f"no audio devices found ({NO_DEVICE_HINT})"
    return str(devices)
