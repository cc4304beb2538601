"""The two error kinds: definition errors raised before anything runs, execution errors after."""


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


class DefinitionError(PipelineError):
    """The pipeline is wrong as declared (cycle, missing input, wrong type, bad parameter).

    Raised before any component runs; the message names the component and the fix.
    """


class UserInputError(PipelineError):
    """Bad input data or bad user code, found while a component runs.

    Components raise it with a message that names the file, line, feature or function and says
    what to do; the runner records it on the FAILED execution and shows it without a traceback.
    """


class NoModel(UserInputError):
    """There is no model to do what was asked with (score rows: nothing pushed or blessed yet).
    Not a failure of the data or the code: `runner.py score` and `run` say so on one line and exit
    4 (EXIT_NO_MODEL), so that a schedule tells it from a failure."""


NO_MODEL_PREFIX = "no model to score with"


class ExecutionError(PipelineError):
    """A component failed while running; carries the component id, execution id and cause."""

    def __init__(self, component_id: str, execution_id: int, cause: BaseException):
        self.component_id = component_id
        self.execution_id = execution_id
        self.cause = cause
        super().__init__(f"{component_id} failed (execution {execution_id}): {describe_error(cause)}")


class RunBlocked(PipelineError):
    """A gate (such as ExampleValidator) completed and decided the run must not go on."""

    def __init__(self, component_id: str, execution_id: int | None, reason: str):
        self.component_id = component_id
        self.execution_id = execution_id
        self.reason = reason
        super().__init__(f"{component_id} stopped the run (execution {execution_id}): {reason}")


class LockHeldError(PipelineError):
    """Another run holds the pipeline root's lock."""


class StoreUnavailable(PipelineError):
    """The metadata store cannot be opened: its server does not answer (after a few tries),
    refuses the login, or has no such database. The message names the store, password masked,
    and what to check; commands exit 69 (EX_UNAVAILABLE), which a scheduler may retry."""


class Interrupted(BaseException):
    """The run was told to stop by a signal (see `pipeline.signals`). A BaseException, as
    KeyboardInterrupt is, so that no `except Exception` in a step's code swallows it."""

    def __init__(self, signal_name: str, exit_code: int):
        self.signal_name = signal_name
        self.exit_code = exit_code
        self.execution_id: int | None = None  # the execution it stopped, once recorded
        self.result: object = None  # the run's RunResult, once it is recorded INTERRUPTED
        super().__init__(f"interrupted by {signal_name}")


def describe_error(error: BaseException) -> str:
    """One line for a person: the message of expected errors, type and message of the rest."""
    if isinstance(error, (PipelineError, Interrupted)):
        return str(error)
    return f"{type(error).__name__}: {error}"
