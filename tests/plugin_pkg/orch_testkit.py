"""A third-party plugin, built and installed for real by the tests: executors that sleep, echo and fail."""
import os
import subprocess
import sys
import time

from orchestrator import Executor, TaskMetrics, hookimpl, task


class Echo(Executor):
    """Prints and reports what it was given."""

    name = "echo"

    def __init__(self, prefix: str = "", password: str = "") -> None:
        self.prefix = prefix
        self.password = password

    @task
    def say(self, text: str = "hello", context=None):
        print(f"{self.prefix}{text}")
        os.write(1, b"RAW-FD-1\n")
        subprocess.run(["echo", "FROM-SUBPROCESS"], check=True)
        context.logger.info("said %s", text)
        return TaskMetrics(total_rows=len(text), execution_metadata={"text": text})

    def check(self):
        return ["prefix 'broken' cannot work here; pick another"] if self.prefix == "broken" else []

    @task
    def noop(self):
        return None

    @task
    def remember(self, next: int = 0, fail: bool = False, context=None):
        """Reports the saved watermark and proposes the next one."""
        context.next_watermark = next
        if fail:
            raise RuntimeError("failing after setting next_watermark")
        return TaskMetrics(execution_metadata={"seen": context.watermark})

    @task
    def run_routine(self, path: str):
        """Runs another routine in-process: it becomes a child run."""
        from orchestrator import Orchestrator

        result = Orchestrator().run(path)
        return TaskMetrics(execution_metadata={"child": result.run_id, "child_status": result.status})

    @task
    def fail(self, message: str = "boom"):
        raise RuntimeError(f"{message} {self.password}")


class Sleeper(Executor):
    """Waits until cancelled or done; writes a marker file when cancel() is called."""

    name = "sleeper"

    def __init__(self, marker: str = "") -> None:
        self.marker = marker

    @task
    def sleep(self, seconds: float = 60, context=None):
        print("sleeping", flush=True)
        sys.stderr.write("SLEEPING\n")
        sys.stderr.flush()
        context.wait(seconds)
        context.check_cancelled()

    @task
    def stubborn(self, seconds: float = 60):
        """Ignores cancellation entirely."""
        sys.stderr.write("STUBBORN\n")
        sys.stderr.flush()
        time.sleep(seconds)

    def cancel(self):
        if self.marker:
            with open(self.marker, "a") as handle:
                handle.write(f"cancelled {time.time()}\n")


@hookimpl
def register_executors():
    return [Echo, Sleeper]
