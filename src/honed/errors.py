"""honed's exceptions.

    HonedError                 base of everything honed raises on purpose
    ├── UserError              bad input the user can fix: printed in one line, exit code 2
    │   ├── TaskError          a task file (honed.toml) or its data is invalid
    │   ├── DataError          a data file cannot be read (file, line, field named)
    │   └── ModelNotFound      a model alias or path that resolves to nothing
    ├── MissingDependency      an optional package is needed: says which `pip install` fixes it
    └── BackendUnavailable     a server does not answer, or answers with an error

Anything else that escapes to the CLI is a bug in honed and is shown with its traceback.
"""

from __future__ import annotations


class HonedError(Exception):
    """Base class of every error honed raises on purpose."""

    exit_code = 1


class UserError(HonedError):
    """Input the user can fix. The message says what, where, and what to do next."""

    exit_code = 2


class TaskError(UserError):
    """A task specification is invalid."""


class DataError(UserError):
    """A data file cannot be used."""


class ModelNotFound(UserError):
    """A model alias or path resolves to no model."""


class MissingDependency(HonedError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str | None = None, why: str = "") -> None:
        fix = f'pip install "honed[{extra}]"' if extra else f"pip install {package}"
        what = f" ({why})" if why else ""
        super().__init__(f"{package} is not installed{what}; run: {fix}")
        self.package = package


class BackendUnavailable(HonedError):
    """A model server cannot be reached or failed."""
