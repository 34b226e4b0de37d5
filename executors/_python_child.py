"""Run one ``python`` task call in a child process, so that a timeout or a cancel really stops it.

A thread cannot be stopped from outside; a process can. The parent (:class:`ChildCall`) starts
``python -m executors._python_child FD`` in its own session, sends the call on stdin and keeps
stdin open; the child sends log records and the outcome back as pickled messages on ``FD``.
Printed output comes back through pipes and is printed again in the parent, inside the task's
context, so the run log attributes it to the task as if it ran in-process.

Stopping: SIGTERM to the child's process group is raised inside the function as
:class:`Terminated` (a ``BaseException``, so ``except Exception`` cannot swallow it, while
``finally`` blocks and context managers still run); whatever is left after the grace period is
killed with SIGKILL, including processes the function started. A child whose parent died sees
its stdin close and stops itself the same way.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, TextIO

from orchestrator.executor import Cancelled, Context, TaskMetrics

GRACE_ENV = "ORCHESTRATOR_CANCEL_GRACE"


def stop_grace() -> float:
    """Seconds between SIGTERM and SIGKILL: at most 3, and half the engine's cancel grace, so the
    child is gone before the engine stops waiting for the task."""
    try:
        engine_grace = float(os.environ.get(GRACE_ENV, "10"))
    except ValueError:
        # A malformed variable must not break cancellation: use the engine's default.
        engine_grace = 10.0
    # Never zero: the function always gets a moment for its finally blocks.
    return max(0.1, min(3.0, engine_grace / 2))


class Terminated(BaseException):
    """Raised inside the child's function when it is asked to stop."""


class ChildTaskError(RuntimeError):
    """The function failed with an exception that cannot be rebuilt here (its class is in the user's
    file): its type name and message, and whether a retry may help."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


# ---------------------------------------------------------------------- parent side

class ChildCall:
    """One call of ``function`` from ``path`` in a child process; ``stop()`` from any thread."""

    def __init__(self, path: str, function: str, kwargs: dict[str, Any],
                 context: Context | None) -> None:
        self.request: dict[str, Any] = {
            "path": path, "function": function, "kwargs": kwargs,
            "context": _context_fields(context),
            # an untrusted (event) routine may call only functions the file defines
            "own_only": context is not None and not context.trusted}
        self.context = context
        self.process: subprocess.Popen[bytes] | None = None
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> Any:
        """Start the child, relay its output, return what the function returned (its metrics, or
        its value as a task's result keeps it) or raise what it raised."""
        # A pipe of its own for messages: stdout and stderr carry the function's prints, which are
        # relayed as they are and never parsed.
        read_fd, write_fd = os.pipe()
        try:
            with self._lock:
                # Checked under the lock stop() takes: a stop either comes before this check and is
                # seen here, or after Popen and finds the process to signal. None falls in between.
                if self._stop_requested.is_set():
                    raise Cancelled("cancelled before the task started")
                self.process = subprocess.Popen(
                    # -P: the working folder must not shadow the parent's import path (3.11+)
                    [sys.executable, "-P", "-m", "executors._python_child", str(write_fd)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    # A session of its own makes the child lead a process group: the group signal
                    # reaches what the function started, and a Ctrl-C in the terminal does not hit
                    # the child behind our back.
                    pass_fds=(write_fd,), env=_child_env(self.context), start_new_session=True)
        finally:
            # Our copy of the write end closes at once: only then does the read end see EOF when the
            # child exits.
            os.close(write_fd)
        messages = Connection(read_fd, writable=False)
        relays = [self._relay(self.process.stdout, "stdout"),
                  self._relay(self.process.stderr, "stderr")]
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(_frame(self.request))
            self.process.stdin.flush()
            outcome = self._wait(messages)
            try:
                self.process.wait(stop_grace())  # it has reported (or closed its end): let it exit
            except subprocess.TimeoutExpired:
                pass
        finally:
            if self.process.poll() is None:  # stopped, or the wait failed: nothing may keep running
                self._stop_process()
            messages.close()
            for relay in relays:
                # Bounded: a grandchild that left the group but kept the pipes would hold a relay
                # open forever.
                relay.join(timeout=2)
            if self.process.stdin is not None:
                _quietly(self.process.stdin.close)
        return self._result(outcome)

    def stop(self) -> None:
        """Ask the child to stop (SIGTERM to its group); ``run`` kills it after the grace period."""
        with self._lock:
            self._stop_requested.set()
            process = self.process
        # poll() first: once the child has been reaped its pid, which is its group id, may belong to
        # another process.
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)

    def _wait(self, messages: Connection) -> tuple[str, Any] | None:
        assert self.process is not None
        outcome = None
        while True:
            cancelled = self.context is not None and self.context.cancelled
            if self._stop_requested.is_set() or cancelled:
                self.stop()
                self._stop_process()
                raise Cancelled(f"{self._name()} stopped (its process was terminated)")
            # Short polls: the context's cancel flag cannot be waited on together with the pipe,
            # so it is looked at every 50 ms.
            if messages.poll(0.05):
                try:
                    message = messages.recv()
                except (EOFError, OSError):
                    # The child closed its end: it has exited or is about to, and what it sent is
                    # all there is.
                    return outcome
                outcome = self._handle(message) or outcome
            elif self.process.poll() is not None:
                while messages.poll(0):  # what the child sent just before it ended
                    try:
                        outcome = self._handle(messages.recv()) or outcome
                    except (EOFError, OSError):
                        break
                return outcome

    def _handle(self, message: tuple[str, Any]) -> tuple[str, Any] | None:
        kind, payload = message
        # Log records arrive as they happen; any other message is the outcome.
        if kind == "log":
            level, text = payload
            self._logger().log(level, "%s", text)
            return None
        return message

    def _result(self, outcome: tuple[str, Any] | None) -> Any:
        assert self.process is not None
        if outcome is None:
            code = self.process.returncode
            how = f"was killed by signal {-code}" if code is not None and code < 0 \
                else f"exited with code {code}"
            # No outcome: the child died without reporting (the OOM killer, or os._exit in the
            # function).
            raise ChildTaskError(f"the process running {self._name()} {how} before it reported")
        kind, payload = outcome
        if kind == "result":
            returned, next_watermark = payload
            if self.context is not None and next_watermark is not None:
                self.context.next_watermark = next_watermark
            return _returned_from(returned)
        if kind == "cancelled":
            raise Cancelled(f"{self._name()} stopped")
        raise _error_from(payload)

    def _stop_process(self) -> None:
        """Terminate the child's process group, then kill what is left after the grace period."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(stop_grace())
            except subprocess.TimeoutExpired:
                pass
        _signal_group(process.pid, signal.SIGKILL)  # also what the function started, alive or not
        # Reaped: no zombie, and returncode is set for _result.
        process.wait()

    def _relay(self, stream: Any, sys_stream: str) -> threading.Thread:
        """Print the child's output here in the task's context, as an in-process task would."""

        def pump() -> None:
            # looked up per line: LogCapture swaps sys.stdout and sys.stderr while a run is recorded
            target: Callable[[], TextIO] = lambda: getattr(sys, sys_stream)  # noqa: E731
            for raw in iter(stream.readline, b""):
                # Bytes decoded here: a print in another encoding must not kill the relay.
                line = raw.decode("utf-8", "replace")
                if self.context is not None:
                    with self.context.active():
                        target().write(line)
                else:
                    target().write(line)
            stream.close()

        # Daemon: a relay stuck on a pipe a grandchild holds must not keep the interpreter alive.
        thread = threading.Thread(target=pump, name=f"relay-{sys_stream}", daemon=True)
        thread.start()
        return thread

    def _logger(self) -> logging.Logger | logging.LoggerAdapter[Any]:
        if self.context is not None:
            return self.context.logger
        return logging.getLogger("orchestrator.task.python")

    def _name(self) -> str:
        return f"{Path(self.request['path']).name}:{self.request['function']}"


def _context_fields(context: Context | None) -> dict[str, Any] | None:
    if context is None:
        return None
    # Plain fields only cross the pipe: a Context holds an event, locks and loggers, which do not
    # pickle. The child builds its own from these.
    return {"run_id": context.run_id, "run_date": context.run_date,
            "routine_name": context.routine_name, "step": context.step, "task": context.task,
            "attempt": context.attempt, "watermark": context.watermark,
            "resumed_from": context.resumed_from, "home": str(context.home)}


def _child_env(context: Context | None) -> dict[str, str]:
    """The parent's environment and import path; a run started in the child is the task's child."""
    # Unbuffered: prints reach the relay (and the run log) as they happen, and none are lost in a
    # buffer when the child is killed.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Our sys.path, so the child imports executors and the user's modules as we do (-P leaves out
    # the working folder).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.exists(p))
    if context is not None:
        env["ORCHESTRATOR_PARENT_RUN_ID"] = context.run_id
    return env


def _frame(value: Any) -> bytes:
    data = pickle.dumps(value)
    # Length-prefixed: stdin stays open after the request (its EOF means the parent died), so the
    # child cannot read the request to EOF.
    return len(data).to_bytes(8, "big") + data


def _signal_group(pid: int, sig: int) -> None:
    try:
        # The group's id is the child's pid: start_new_session made it the group leader.
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:
        pass


def _returned_from(payload: tuple[str, Any]) -> Any:
    kind, value = payload
    return _metrics_from(value) if kind == "metrics" else value


def _metrics_from(payload: dict[str, Any] | None) -> TaskMetrics | None:
    """TaskMetrics, or a look-alike subclass with the same fields (the child's class may be in the
    user's file, which is not importable here)."""
    if payload is None:
        return None
    fields = payload["fields"]
    base = {f.name for f in dataclasses.fields(TaskMetrics)}
    extra = [name for name in fields if name not in base]
    if not extra:
        return TaskMetrics(**fields)
    extra_fields = [(name, Any, dataclasses.field(default=None)) for name in extra]
    cls = dataclasses.make_dataclass(payload["class"], extra_fields, bases=(TaskMetrics,))
    return cls(**fields)


def _error_from(payload: dict[str, Any]) -> BaseException:
    exc: BaseException | None = None
    if payload.get("pickled") is not None:
        try:
            exc = pickle.loads(payload["pickled"])
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = ChildTaskError(
            f"{payload['type']}: {payload['message']}", payload.get("retryable", True)
        )
    # What the run keeps and shows: where it failed in the child, not how the parent heard of it.
    try:
        exc.child_traceback = payload["traceback"]  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return exc


# ---------------------------------------------------------------------- child side

class _Forward(logging.Handler):
    def __init__(self, send: Callable[[tuple[str, Any]], None]) -> None:
        super().__init__(logging.INFO)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send(("log", (record.levelno, self.format(record))))
        except Exception:
            self.handleError(record)


def _read_request(stream: Any) -> dict[str, Any]:
    size = int.from_bytes(stream.read(8), "big")
    return pickle.loads(stream.read(size))


def _watch_parent(fd: int) -> None:
    """The parent holds our stdin open while it waits: EOF means it is gone, so stop as if told to.

    Reads the raw descriptor: a thread blocked in ``sys.stdin.buffer`` would hold its lock and
    make the interpreter abort at exit."""
    while os.read(fd, 65536):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(stop_grace())
    # A function that swallowed Terminated (except BaseException) is killed with its group after
    # the grace, as the parent would.
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _on_sigterm(cancel: threading.Event) -> Callable[..., None]:
    def handler(signum: int, frame: Any) -> None:
        # The flag first: threads the function started never see the exception, only the flag.
        cancel.set()
        raise Terminated("asked to stop")

    return handler


def _encode_return(value: Any) -> tuple[str, Any]:
    """What the function returned, in a form the parent can rebuild without the user's file:
    metrics (a dict of metric names or a metrics look-alike become TaskMetrics), or the value as
    a task's result keeps it (JSON, else its repr)."""
    from orchestrator.returns import kept_result

    metrics = TaskMetrics.from_value(value)
    if metrics is None:
        return "value", kept_result(value)
    return "metrics", _encode_metrics(metrics)


def _encode_metrics(value: TaskMetrics) -> dict[str, Any]:
    fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    try:
        pickle.loads(pickle.dumps(fields))
    except Exception:  # values the parent could not rebuild: as JSON, like the run store keeps them
        fields = json.loads(json.dumps(fields, default=str))
    return {"class": type(value).__name__, "fields": fields}


def _encode_error(exc: BaseException) -> dict[str, Any]:
    try:
        # An exception holding a socket or a lock does not pickle; it goes as type and message.
        pickled: bytes | None = pickle.dumps(exc)
    except Exception:
        pickled = None
    return {"type": type(exc).__name__, "message": str(exc), "pickled": pickled,
            "retryable": getattr(exc, "retryable", True),
            "traceback": _user_traceback(exc)}


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the user's function down: this module's own frames say nothing."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _call(request: dict[str, Any], cancel: threading.Event) -> tuple[str, Any]:
    from .staging.loader import function_of, load_file

    from orchestrator.executor import accepts_context

    fields = request["context"]
    context = None
    if fields is not None:
        fields = dict(fields, home=Path(fields["home"]))
        watermark = fields.pop("watermark")
        # The same event the SIGTERM handler sets: context.cancelled and check_cancelled() work here
        # as they do in-process.
        context = Context(cancel_event=cancel, watermark=watermark, **fields)
    fn = function_of(
        load_file(request["path"]), request["function"], request.get("own_only", False)
    )
    extra = {"context": context} if context is not None and accepts_context(fn) else {}
    if context is None:
        return "result", (_encode_return(fn(**request["kwargs"], **extra)), None)
    with context.active():
        value = fn(**request["kwargs"], **extra)
    return "result", (_encode_return(value), context.next_watermark)


def main(argv: list[str]) -> int:
    out = Connection(int(argv[0]), readable=False)
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        # Log records may come from the function's threads; Connection.send is not thread-safe.
        with lock:
            out.send(message)

    for stream in (sys.stdout, sys.stderr):  # a name that is not UTF-8 must not kill the print
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    cancel = threading.Event()
    # Before the request is read and the file imported: a stop that comes while the user's module
    # loads must already raise Terminated.
    signal.signal(signal.SIGTERM, _on_sigterm(cancel))
    request = _read_request(sys.stdin.buffer)
    # Started only after the request is read: the watcher consumes stdin and must not eat it.
    threading.Thread(target=_watch_parent, args=(sys.stdin.fileno(),), daemon=True).start()
    # The root logger, so the function's own loggers, whatever their names, reach the task log.
    root = logging.getLogger()
    root.addHandler(_Forward(send))
    root.setLevel(logging.INFO)
    try:
        message = _call(request, cancel)
    except Terminated:
        message = ("cancelled", None)
    except BaseException as exc:  # reported to the parent, which raises it as the task's failure
        message = ("error", _encode_error(exc))
    try:
        send(message)
    except Terminated:
        # A SIGTERM may land during the send itself; the parent still learns the call was stopped.
        send(("cancelled", None))
    # 0 either way: the outcome travelled as a message, and the parent reads the exit code only
    # when none came.
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
