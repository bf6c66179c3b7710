"""Reading and writing beside the pipeline: `bag segment` overlaps bag I/O with inference.

The pipeline's decisions stay on one thread and in bag order (so the output is the same byte for byte);
only pure work moves: one thread reads, deserialises and decodes the messages ahead, another
serialises and writes the outputs in the order they were made. ONNX Runtime, OpenCV's decoders and
file writes release the GIL, so on a robot-sized model the I/O hides behind inference.
"""

from __future__ import annotations

import queue
import threading

from csk_ros.bag.bagio import Topics, atomic_writer
from csk_ros.imaging.ros_image import ImageDecodeError

_END, _ABORT = object(), object()


class ReadAhead:
    """Iterates (stream, connection, t_ns, raw, msg or None, (image, ms) or ImageDecodeError or None) in bag
    order, produced by a background thread at most `depth` messages ahead. A read error ends the iteration
    with `.error` set (a truncated recording); a deserialisation error yields msg None."""

    def __init__(self, reader, messages, stream_of: dict, decode, read_errors: tuple, depth: int = 16):
        self.error: Exception | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._args = (reader, messages, stream_of, decode, read_errors)
        self._thread = threading.Thread(target=self._run, name="bag_read", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        reader, messages, stream_of, decode, read_errors = self._args
        try:
            for connection, t_ns, raw in messages:
                stream = stream_of[connection.topic]
                try:
                    msg = reader.deserialize(raw, connection.msgtype)
                except read_errors:
                    msg, decoded = None, None
                else:
                    try:
                        decoded = decode(stream, msg)
                    except ImageDecodeError as exc:
                        decoded = exc
                if not self._put((stream, connection, t_ns, raw, msg, decoded)):
                    return
        except read_errors as exc:  # a recording cut off mid-write: what was read stands
            self.error = exc
        finally:
            self._put(_END)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class _Aborted(Exception):
    """The run failed elsewhere: leave no output."""


class WriteBehind:
    """The output bag, written on a background thread: serialisation and file writes in call order.
    The thread owns the bag from open to close (sqlite3 connections are bound to their thread), and the
    bag appears at OUT only when close() succeeds; abort() leaves nothing. An error opening OUT (it
    exists, say) raises here at once; one while writing raises at the next call or at close()."""

    def __init__(self, out, storage: str, factory, depth: int = 64):
        self.factory = factory
        self._args = (out, storage)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bag_write", daemon=True)
        self._thread.start()
        self._ready.wait()
        self._check()

    def _run(self) -> None:
        try:
            with atomic_writer(*self._args) as writer:
                topics = Topics(writer, self.factory)
                self._ready.set()
                while True:
                    item = self._queue.get()
                    if item is _END:
                        break
                    if item is _ABORT:
                        raise _Aborted
                    method, args = item
                    getattr(topics, method)(*args)
        except _Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._error = exc
            opened = self._ready.is_set()
            self._ready.set()
            while opened and self._queue.get() not in (_END, _ABORT):  # let the caller's puts and close() end
                pass
        finally:
            self._ready.set()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, topic: str, msgtype: str, msg, time_ns: int) -> None:
        self._check()
        self._queue.put(("write", (topic, msgtype, msg, time_ns)))

    def write_raw(self, topic: str, connection, raw: bytes, time_ns: int) -> None:
        self._check()
        self._queue.put(("write_raw", (topic, connection, raw, time_ns)))

    def close(self) -> None:
        """Wait for every message; the bag is at OUT when this returns."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        self._check()

    def abort(self) -> None:
        """Stop without output (the staging folder is removed)."""
        if self._thread.is_alive():
            self._queue.put(_ABORT)
            self._thread.join()
