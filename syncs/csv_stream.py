"""Streaming CSV that a spreadsheet opens safely: the feeds Inventory Planner fetches and the files staff export.

Rows go out in chunks as they are made (Django's documented pattern for streaming CSV, through a pseudo-buffer),
so a large file never sits in memory; text that a spreadsheet would run as a formula is defused.
"""

import csv
from collections.abc import Iterable, Iterator

from mappings.validators import FORMULA_STARTS

# Rows are handed to the server in chunks of about this many characters: one write per chunk, not per row.
CHUNK_CHARACTERS = 64 * 1024


def text_cell(value: str) -> str:
    """A text value made safe for a spreadsheet: one that would start a formula gets a leading apostrophe. Only
    text columns go through here, so negative numbers stay numbers."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def csv_chunks(columns: Iterable[str], rows: Iterable[Iterable[str]]) -> Iterator[str]:
    """The CSV text of a header and rows, in chunks of about CHUNK_CHARACTERS. The csv module writes each row
    into a pseudo-buffer that hands it straight back (Django's documented pattern for streaming CSV), so no more
    than one chunk is ever held."""
    writer = csv.writer(_Echo())
    pending, size = [writer.writerow(columns)], 0
    for row in rows:
        line = writer.writerow(row)
        pending.append(line)
        size += len(line)
        if size >= CHUNK_CHARACTERS:
            yield "".join(pending)
            pending, size = [], 0
    yield "".join(pending)


class _Echo:
    """A file-like object whose ``write`` returns what it is given, so csv.writer.writerow returns the line."""

    def write(self, value: str) -> str:
        return value
