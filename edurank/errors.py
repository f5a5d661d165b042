"""Errors caused by the user's input: the CLI turns them into exit code 2, the service into HTTP 4xx."""

from __future__ import annotations


class InputError(Exception):
    """Bad input (file, argument, request field); the message says what is wrong and where."""


class CatalogError(InputError):
    """A catalog file breaks the LECR layout; names the file, row and column when they are known."""

    def __init__(self, file: str, message: str, row: int | None = None, column: str | None = None):
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
        self.file, self.row, self.column = file, row, column


class ArtifactMismatchError(InputError):
    """Two artifacts that must agree (an index and its encoder, say) do not."""
