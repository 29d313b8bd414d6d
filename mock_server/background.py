"""The embedded mock for synchronous code: its own event loop in a background thread.

`MockHostedAI` is async (`async with MockHostedAI() as mock:`). Code that is not — a `requests` or
sync-httpx client, a plain pytest test, a unittest suite — uses the same object synchronously, like
moto's `ThreadedMotoServer`:

    with MockHostedAI(clock="manual") as mock:           # serves from a thread of its own
        requests.post(f"{mock.url}/v1/allocate", ...)
        mock.advance(60)

    mock = MockHostedAI()

    @mock                                                 # started for each call, stopped after it
    def test_pools():
        assert requests.get(f"{mock.url}/health").ok

The server runs on the thread's loop; `run_on_loop` is how a sync caller reaches its state safely.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

_T = TypeVar("_T")
_P = ParamSpec("_P")
_START_TIMEOUT_S = 60.0


class BackgroundLoop:
    """An asyncio event loop running forever in a daemon thread, until `close()`."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    @property
    def is_current(self) -> bool:
        """True when called from the loop's own thread (where state may be touched directly)."""
        return threading.current_thread() is self._thread

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout_s: float | None = _START_TIMEOUT_S) -> _T:
        """Run a coroutine on the loop and wait for its result (its exception is raised here)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def call(self, function: Callable[[], _T]) -> _T:
        """Call a function on the loop's thread and wait for its result."""

        async def invoke() -> _T:
            return function()

        return self.run(invoke())

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


class SyncEmbedding:
    """`with` and `@decorator` for a server with `async start()` and `async stop()`: the server runs on
    a `BackgroundLoop` while the block (or the decorated call) runs."""

    _background: BackgroundLoop | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        if self._background is not None:
            raise RuntimeError("this mock is already running in a thread; one `with` at a time")
        background = BackgroundLoop(f"{type(self).__name__}-loop")
        try:
            background.run(self.start())
        except BaseException:
            background.close()
            raise
        self._background = background
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        background, self._background = self._background, None
        if background is not None:
            try:
                background.run(self.stop())
            finally:
                background.close()

    def run_on_loop(self, function: Callable[[], _T]) -> _T:
        """`function()` on the server's loop: from another thread when the server runs in one, else here."""
        background = self._background
        if background is None or background.is_current:
            return function()
        return background.call(function)

    def __call__(self, function: Callable[_P, _T]) -> Callable[_P, _T]:
        """Decorate a function (sync or async) so that the server runs for each call of it."""
        if inspect.iscoroutinefunction(function):
            coroutine_function: Callable[_P, Awaitable[Any]] = function

            @functools.wraps(function)
            async def run_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                await self.start()
                try:
                    return await coroutine_function(*args, **kwargs)
                finally:
                    await self.stop()

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run_sync(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            with self:
                return function(*args, **kwargs)

        return run_sync
