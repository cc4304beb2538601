"""The run's worker process: executes the steps that need TensorFlow, after importing it ahead.

Importing Beam, TensorFlow and TF Transform takes about 4.6 s of one core, longer than ExampleGen,
StatisticsGen and ExampleValidator take on small data. The runner starts this process when the
run's first step starts executing; it imports the modules that the first TensorFlow step declares
(`Component(preload=...)`) on the other core meanwhile, then executes the steps that declare
some, one at a time, as the runner sends them; the later ones import the rest as they start
(after Transform's peak of memory, not under it). The runner's own process never imports
TensorFlow. `RunOptions(step_worker=False)` (`run --one-process`) keeps every step in the runner.

What crosses the process boundary: the component's run function, its parameters and its input
and output artifacts (pickled with cloudpickle, so that functions from a pipeline file or a test
travel by value), and the execution context without its store and log. Back come log lines, then
the output artifacts as the step left them with the context's decisions (blocked, held back), or
the step's exception with its traceback. The worker never opens the metadata store: every input
a step needs, resolver inputs included, is resolved by the runner before it executes.

Each request also carries the runner's environment, working directory and sys.path, so a step
sees what it would see in the runner (the run's TMPDIR above all). A worker whose steps all
succeeded is kept for the next run of the same process (`acquire`/`give_back`: a scheduler or a
test running pipelines one after another imports TensorFlow once) and stopped when the process
exits; one where a step failed is stopped at the end of its run. The worker dies with the runner
(PR_SET_PDEATHSIG on Linux; elsewhere when its socket closes). If it dies while a step executes,
the step fails with a `StepWorkerDied` naming the signal or exit code.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from pipeline.component import Outcome
from pipeline.errors import UserInputError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StepWorkerDied(RuntimeError):
    """The worker process ended while executing a step (killed, out of memory, crashed)."""


class StepWorker:
    """A worker process that has imported `modules` (or is importing them) and executes steps."""

    def __init__(self, modules: list[str]):
        ours, theirs = socket.socketpair()
        path = os.pathsep.join([REPO_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
        env = {**os.environ, "PYTHONPATH": path}  # the preloaded modules are the project's
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.step_worker", str(theirs.fileno()), str(os.getpid()), *modules],
            pass_fds=[theirs.fileno()],
            env=env,
        )
        theirs.close()
        self.connection = Connection(ours.detach())
        self.modules = modules
        self.failed = False  # a step failed here: its state is not to be trusted by another run

    def alive(self) -> bool:
        return self.process.poll() is None

    def execute(self, run: Callable, ctx: Any, params: Any, inputs: dict, outputs: dict) -> Outcome:
        """Runs `run(ctx, params, **inputs, **outputs)` in the worker, logging its records
        (level and message) through `ctx.log` here; returns its `Outcome`, or raises the step's exception."""
        import cloudpickle

        from pipeline.usercode import register_user_modules_by_value

        register_user_modules_by_value(cloudpickle)
        travelling = dataclasses.replace(ctx, sink=None)
        environment = (dict(os.environ), os.getcwd(), [p or os.getcwd() for p in sys.path])
        request = cloudpickle.dumps((environment, run, travelling, params, inputs, outputs))
        try:
            self.connection.send_bytes(request)
        except OSError:  # the worker is gone
            self.failed = True
            raise StepWorkerDied(self._death()) from None
        while True:
            try:
                kind, *payload = pickle.loads(self.connection.recv_bytes())
            except (EOFError, OSError):
                self.failed = True
                raise StepWorkerDied(self._death()) from None
            except BaseException:  # interrupted (a signal) while the step executes there
                self.stop()
                raise
            if kind == "log":
                level, message = payload
                ctx.log(message, level)
            elif kind == "done":
                outputs, blocked, held_back, rss, peak = payload
                return Outcome(outputs, blocked, held_back, f"worker memory {rss} MB, peak so far {peak} MB")
            else:
                self.failed = True
                data, text = payload
                error = pickle.loads(data)
                error.worker_traceback = text
                raise error

    def _death(self) -> str:
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "the step's worker process stopped answering"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"the step's worker process was killed by {name}{hint}"
        return f"the step's worker process exited with code {code}"

    def stop(self) -> None:
        """Kills the worker and every process it started (a Trainer's training workers, Beam's),
        mid-step: the runner records the step as interrupted and removes what it staged."""
        from pipeline.signals import kill_tree

        self.failed = True
        kill_tree(self.process.pid)
        self.close()

    def close(self) -> None:
        """Stops the worker at once (it holds nothing to save: every step's outputs are written by
        the time the runner closes it, and a step cut short is the runner's to record)."""
        self.connection.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


_IDLE: list[StepWorker] = []  # workers kept for the next run of this process
_IDLE_LOCK = threading.Lock()


def acquire(modules: list[str]) -> StepWorker:
    """A worker kept from an earlier run of this process, else a new one importing `modules`."""
    with _IDLE_LOCK:
        kept = [_IDLE.pop() for _ in range(len(_IDLE))]
    found = next((w for w in kept if w.alive()), None)
    for worker in kept:
        if worker is not found:
            worker.close()
    return found or StepWorker(modules)


def give_back(worker: StepWorker) -> None:
    """At the end of a run: kept for the next one if every step it executed succeeded."""
    if worker.failed or not worker.alive():
        worker.close()
        return
    with _IDLE_LOCK:
        _IDLE.append(worker)


@atexit.register
def _close_idle() -> None:
    with _IDLE_LOCK:
        workers = [_IDLE.pop() for _ in range(len(_IDLE))]
    for worker in workers:
        worker.close()


def _adopt(environment: tuple[dict, str, list[str]]) -> None:
    """The runner's environment variables, working directory and import path, for one step."""
    variables, cwd, path = environment
    os.environ.clear()
    os.environ.update(variables)
    tempfile.tempdir = None  # found again from TMPDIR: the run's own temporary directory
    os.chdir(cwd)
    sys.path[:] = [*path, *(p for p in sys.path if p not in path)]


def _die_with_parent(parent_pid: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the closed socket ends the worker between steps
    if os.getppid() != parent_pid:  # the runner died before prctl took effect
        os._exit(1)


def _stand_in(error: BaseException) -> BaseException:
    """An exception the runner can unpickle, with the same type name and message."""
    if isinstance(error, UserInputError):
        return UserInputError(str(error))
    return type(type(error).__name__, (Exception,), {"__module__": "builtins"})(str(error))


def _picklable(error: BaseException) -> bytes:
    import cloudpickle

    try:
        data = cloudpickle.dumps(error)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - any failure to travel gets the stand-in
        return cloudpickle.dumps(_stand_in(error))


def _serve(connection: Connection) -> None:
    from pipeline.memory import peak_rss_mb, release_free_memory, rss_mb, settle_heap
    from pipeline.quiet import quiet_libraries

    sending = threading.Lock()  # a step may log from several threads

    def send(message: tuple) -> None:
        data = pickle.dumps(message)
        with sending:
            connection.send_bytes(data)

    while True:
        try:
            request = connection.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            environment, run, ctx, params, inputs, outputs = pickle.loads(request)
            _adopt(environment)
            # Again for every step: a library may have reset its logger since (a worker kept from
            # one run to the next printed absl's warnings in the second run's Transform).
            quiet_libraries()
            ctx.forward = lambda level, message: send(("log", level, message))
            run(ctx, params, **inputs, **outputs)
        except BaseException as error:  # noqa: BLE001 - sent to the runner, which records it
            text = traceback.format_exc()
            send(("error", _picklable(error), text))
            continue
        finally:
            settle_heap()
            release_free_memory()
        send(("done", outputs, ctx.blocked, ctx.held_back, rss_mb(), peak_rss_mb()))


def main(argv: list[str]) -> None:
    fd, parent_pid, *modules = argv
    _die_with_parent(int(parent_pid))
    from pipeline.quiet import quiet_libraries

    quiet_libraries()
    # Ctrl-C and SIGTERM (often sent to the whole process group) are the runner's to handle: it
    # records the step as interrupted and then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    connection = Connection(int(fd))
    import importlib

    for module in modules:  # in the order of the steps; a step that arrives first goes first
        if connection.poll():
            break
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the step that needs it imports it again and reports
            pass
    _serve(connection)


if __name__ == "__main__":
    main(sys.argv[1:])
