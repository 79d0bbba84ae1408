"""Worker processes for CPU-bound merging (flush and compaction on real files).

Why not ``anyio.to_process`` or ``multiprocessing``: both re-run the parent's ``__main__``
module in each worker (anyio imports it as ``__mp_main__``, spawn and forkserver do the
same), so a user script without an ``if __name__ == "__main__"`` guard would run again inside
the database's worker; and ``fork`` from a process with threads can deadlock. A worker here
is ``python -m quanta._storage._worker_main``: it imports only QuantaDB.

Protocol over the worker's stdin/stdout, one request at a time per worker:

```
request  := length:u64 LE | pickle((module, function, args))
response := length:u64 LE | pickle((ok: bool, result or exception))
```
Only functions of ``quanta._storage`` modules may be called. The parent sends paths and
small metadata and receives small metadata; table data never crosses the pipe.

Concurrency rules: :class:`WorkerPool` is used from the event loop; each call takes an idle
worker or starts one (at most ``size``), so a flush and a compaction can run side by side.
"""

from __future__ import annotations

import importlib
import os
import pickle
import struct
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from ..errors import BackgroundError

__all__ = ["WorkerPool"]

_LEN = struct.Struct("<Q")


class _Worker:
    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self.stdout = BufferedByteReceiveStream(process.stdout)

    async def call(self, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        request = pickle.dumps((func.__module__, func.__qualname__, args), protocol=pickle.HIGHEST_PROTOCOL)
        assert self.process.stdin is not None
        await self.process.stdin.send(_LEN.pack(len(request)) + request)
        (length,) = _LEN.unpack(await self.stdout.receive_exactly(_LEN.size))
        ok, result = pickle.loads(await self.stdout.receive_exactly(length))
        if not ok:
            raise result
        return result

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                if self.process.stdin is not None:
                    await self.process.stdin.aclose()
                with anyio.move_on_after(10):
                    await self.process.wait()
            finally:
                if self.process.returncode is None:
                    self.process.kill()
                    await self.process.wait()
                await self.process.aclose()


class WorkerPool:
    """Up to ``size`` worker processes, started on first use, closed by :meth:`aclose`."""

    def __init__(self, size: int = 2) -> None:
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._limit = anyio.Semaphore(size)

    async def run(self, func: Callable[..., Any], *args: Any) -> Any:
        async with self._limit:
            worker = self._idle.pop() if self._idle else await self._start()
            try:
                result = await worker.call(func, args)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead) as exc:
                self._all.remove(worker)
                await worker.aclose()
                raise BackgroundError(
                    f"a QuantaDB worker process died (exit code {worker.process.returncode})"
                ) from exc
            except BaseException:
                self._idle.append(worker)
                raise
            self._idle.append(worker)
            return result

    async def _start(self) -> _Worker:
        # The worker imports quanta from wherever this process did (an uninstalled checkout too).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = await anyio.open_process(
            [sys.executable, "-u", "-m", "quanta._storage._worker_main"],
            stdin=-1,
            stdout=-1,
            stderr=None,
            env=env,
        )
        worker = _Worker(process)
        self._all.append(worker)
        return worker

    async def aclose(self) -> None:
        workers, self._all, self._idle = self._all, [], []
        for worker in workers:
            await worker.aclose()


def _serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    while True:
        head = stdin.read(_LEN.size)
        if len(head) < _LEN.size:
            return  # the parent closed the pipe: exit quietly
        (length,) = _LEN.unpack(head)
        module, name, args = pickle.loads(stdin.read(length))
        try:
            if not module.startswith("quanta._storage."):
                raise PermissionError(f"worker refuses to call {module}.{name}")
            func = getattr(importlib.import_module(module), name)
            response = (True, func(*args))
        except BaseException as exc:  # report every failure to the parent, never die silently
            response = (False, exc)
        try:
            data = pickle.dumps(response, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable exception: send its text
            data = pickle.dumps((False, RuntimeError(repr(response[1]) + f" ({exc})")))
        stdout.write(_LEN.pack(len(data)) + data)
        stdout.flush()
