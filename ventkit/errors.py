"""Exceptions raised by ventkit, one class per kind of failure."""


class VentkitError(Exception):
    """Base class of every error ventkit raises on purpose."""


class InputError(VentkitError, ValueError):
    """An input file or array that ventkit cannot use; the message names it and the problem."""

    def __init__(self, source, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class VentkitWarning(UserWarning):
    """Something about an input or a result that the user should know (reports carry these)."""
