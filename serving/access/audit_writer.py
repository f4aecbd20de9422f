"""The audit trail's one writer thread per process, with group commit: entries queued by any
request are written together, in one transaction, when the trail's turn comes, and no caller
hears back before its own entries are on disk."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from serving.access.audit_chain import Entry

if TYPE_CHECKING:
    from serving.access.audit import AuditLog

GATHER_SECONDS = 0.002  # the longest a writer waits for entries still coming


class GroupCommit:
    """The writer of one trail: it takes the trail's turn, writes and syncs (through the
    trail's storage, `AuditLog`), then tells every waiter of the batch."""

    def __init__(self, trail: AuditLog) -> None:
        self.trail = trail
        self.queue: queue.SimpleQueue[tuple[list[Entry], Future]] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, entries: list[Entry]) -> Future:
        """Hand entries to the trail's one writer thread.

        Group commit: the writer writes everything queued by the time its turn comes, in
        one transaction, so eight concurrent requests cost one commit rather than eight, and no
        caller hears back before its own entries are on disk. One thread, rather than each
        request taking a thread of the pool and queueing on a lock, spares a thread hop and
        the waiters' lock hand-offs on every request."""
        done: Future = Future()
        self.queue.put((entries, done))
        if self.thread is None:
            with self._start_lock:
                if self.thread is None:
                    self.thread = threading.Thread(
                        target=self._serve, name="audit-writer", daemon=True
                    )
                    self.thread.start()
        return done

    def _serve(self) -> None:
        while True:
            batch = [self.queue.get()]
            self._gather(batch)
            # the file's turn first, then the batch: what queues while another worker writes
            # joins this commit instead of waiting for the next turn
            with self.trail._turn:
                with contextlib.suppress(queue.Empty):
                    while True:
                        batch.append(self.queue.get_nowait())
                # a waiter that has given up (its request cancelled) is not told, but its
                # entries are written all the same; the others can no longer give up
                waiting = [done for _, done in batch if done.set_running_or_notify_cancel()]
                failed: BaseException | None = None
                try:
                    self.trail._write([e for entries, _ in batch for e in entries])
                except BaseException as exc:  # each waiter hears of it; the writer goes on
                    failed = exc
            if failed is None:
                try:
                    self.trail._flush()
                except BaseException as exc:
                    self.trail._close()
                    failed = exc
            if failed is None:
                self.trail.note_head()
            for done in waiting:
                if failed is None:
                    done.set_result(None)
                else:
                    done.set_exception(failed)

    def _gather(self, batch: list[tuple[list[Entry], Future]]) -> None:
        """Wait a moment for the entries of requests still being answered, so they join
        this commit: a commit costs the writer about 0.2 ms of CPU whatever it holds (most
        of it syncing to disk), the same CPU the workers answer with. Only while such
        requests are in flight, and never longer than GATHER_SECONDS from the first entry
        taken, so an answer alone never waits."""
        deadline = time.monotonic() + GATHER_SECONDS
        with contextlib.suppress(queue.Empty):
            while self.trail.coming > 0 and (left := deadline - time.monotonic()) > 0:
                batch.append(self.queue.get(timeout=left))
