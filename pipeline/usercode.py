"""User code: a function from a module file or a callable, loaded once, with errors that name it.

    fn = user_function("preprocessing_fn", module_file="my/module.py")   # or function=fn
    fn(inputs)   # an exception inside becomes a UserInputError naming the function, file and line

Every problem is a `UserInputError` (the runner records the execution FAILED with the message and
shows it without a traceback): a missing file, a syntax error (file and line), an import that
raises, a file without the function, a function that raises when called.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from pipeline.errors import UserInputError

_MODULES: dict[tuple[str, str], ModuleType] = {}


def user_function(
    name: str, *, module_file: str | None = None, function: Callable | None = None
) -> UserFunction:
    """The function `name` from `module_file`, or `function` itself: exactly one must be given."""
    if function is not None and module_file is None:
        return UserFunction(function, name, _source_of(function))
    if module_file is not None and function is None:
        return UserFunction(load_function(module_file, name), name, os.path.abspath(module_file))
    raise UserInputError(f"give {name} either as a module file path or as a callable, not both or neither")


def load_function(module_file: str, name: str) -> Callable:
    """`name` from the module at `module_file`; the module runs once per file content."""
    module = load_module(module_file)
    function = getattr(module, name, None)
    if not callable(function):
        defined = [
            k
            for k, v in vars(module).items()
            if callable(v) and getattr(v, "__module__", "") == module.__name__
        ]
        raise UserInputError(
            f"{module_file} has no function {name!r} (it defines: {', '.join(defined) or 'none'}); "
            f"define `def {name}(...)` at the top level of that file"
        )
    return function


def load_module(module_file: str) -> ModuleType:
    """Imports `module_file` under a name of its own; cached by path and content."""
    path = os.path.abspath(module_file)
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError as error:
        raise UserInputError(
            f"cannot read module file {module_file}: {error.strerror}; check the path "
            f"(relative paths start at {os.getcwd()})"
        ) from None
    key = (path, digest)
    if key not in _MODULES:
        _MODULES[key] = _import(path, digest)
    return _MODULES[key]


_MODULE_PREFIX = "user_module_"


def _import(path: str, digest: str) -> ModuleType:
    stem = os.path.splitext(os.path.basename(path))[0]
    module_name = f"{_MODULE_PREFIX}{stem}_{digest[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserInputError(f"{path} cannot be loaded as a Python module (name it .py)")
    module = importlib.util.module_from_spec(spec)
    # Registered so that inspect, pickle and tracebacks can find the module by name.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[module_name]
        raise UserInputError(f"{path}, line {error.lineno}: syntax error: {error.msg}") from None
    except Exception as error:
        del sys.modules[module_name]
        raise UserInputError(f"{_raised(f'importing {path}', error, path)}; fix the module") from error
    return module


def ship_by_value(function: Callable) -> None:
    """Makes Beam pickle `function`'s module by value when it was loaded from a user's file: such a
    module has a name only the launching process knows, so a worker elsewhere (a portable runner's
    pool, Flink, Spark, Dataflow) could not import it by reference."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    if module is None or not module.__name__.startswith(_MODULE_PREFIX):
        return
    from apache_beam.internal.cloudpickle import cloudpickle

    cloudpickle.register_pickle_by_value(module)


class UserFunction:
    """A user's function; calling it calls the function, and turns an exception raised inside into
    a UserInputError that names the function, its file and the deepest line in that file."""

    def __init__(self, function: Callable, name: str, source: str):
        self.function = function
        self.name = name
        self.source = source

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.function(*args, **kwargs)
        except UserInputError as error:
            # Raised by our code the function called (such as a feature lookup): say where.
            raise UserInputError(
                f"{self.name} in {self.source}{_line(error, self.source)}: {error}"
            ) from error
        except Exception as error:
            raise UserInputError(_raised(f"{self.name} in {self.source}", error, self.source)) from error

    def __repr__(self) -> str:
        return f"UserFunction({self.name} in {self.source})"


def _source_of(function: Callable) -> str:
    code = getattr(function, "__code__", None)
    return os.path.abspath(code.co_filename) if code else repr(function)


def _raised(subject: str, error: BaseException, path: str) -> str:
    """`<subject>, line N, raised Type: message`, the line left out when not found in `path`."""
    line = _line(error, path)
    message = str(error)
    described = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return f"{subject}{line}{',' if line else ''} raised {described}"


def _line(error: BaseException, path: str) -> str:
    """`, line N` for the deepest frame of the traceback that is in `path`, else nothing."""
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == path]
    return f", line {lines[-1]}" if lines else ""


PIPELINE_FACTORY, PIPELINE_VARIABLE = "create_pipeline", "pipeline"


def load_pipeline(pipeline_file: str):
    """The Pipeline a pipeline file defines: the result of its `create_pipeline()`, or else its
    module-level `pipeline`. Every mistake is a DefinitionError that names the file (and the line
    for an exception raised inside it), raised before anything runs."""
    from pipeline.dag import Pipeline
    from pipeline.errors import DefinitionError

    path = os.path.abspath(pipeline_file)
    try:
        module = load_module(path)
        factory = getattr(module, PIPELINE_FACTORY, None)
        if callable(factory):
            built = UserFunction(factory, PIPELINE_FACTORY, path)()
            where = f"{PIPELINE_FACTORY}() in {path}"
        else:
            built = getattr(module, PIPELINE_VARIABLE, None)
            where = f"{path}"
    except UserInputError as error:
        cause = error.__cause__
        if isinstance(cause, DefinitionError):  # raised by our API while the file built its pipeline
            raise DefinitionError(f"{path}{_line(cause, path)}: {cause}") from None
        raise DefinitionError(str(error)) from None
    if not isinstance(built, Pipeline):
        raise DefinitionError(
            f"{where} gave {type(built).__name__}, not a Pipeline; define `def {PIPELINE_FACTORY}() -> "
            f"Pipeline` (or a module-level `{PIPELINE_VARIABLE} = Pipeline(...)`) in that file"
        )
    built.source_file = path
    return built


def register_user_modules_by_value(cloudpickle) -> None:
    """Makes `cloudpickle` pickle every module loaded from a user's file by value (see
    `ship_by_value`): for sending a step, with a function from a pipeline file, to another process."""
    for name, module in list(sys.modules.items()):
        if name.startswith(_MODULE_PREFIX) and module is not None:
            cloudpickle.register_pickle_by_value(module)
