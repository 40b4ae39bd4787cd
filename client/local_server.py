"""A hopcodec service on loopback inside this process (uvicorn in a thread), for tests of the
client library: `with LocalServer() as server: server.url`."""

import socket
import threading
import time
from types import TracebackType

from client.errors import ClientError


class LocalServer:
    """The real service app (`server.app.create_app`) served by uvicorn on 127.0.0.1."""

    def __init__(self, startup_seconds: float = 20.0, **settings: object) -> None:
        try:
            import uvicorn

            from server.app import create_app
            from server.config import Settings
        except ImportError as error:
            raise ClientError(f"cannot start a local server ({error}): install hopcodec's server "
                              "dependencies, or pass --server URL") from None
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(Settings(**settings)), log_level="warning",
                                ws_per_message_deflate=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="hopcodec-local-server", daemon=True)
        self.startup_seconds = startup_seconds

    def __enter__(self) -> "LocalServer":
        self._thread.start()
        deadline = time.monotonic() + self.startup_seconds
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ClientError(f"the local server did not start within {self.startup_seconds:g} s")
            time.sleep(0.02)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
