"""Reader for the raw Amazon Review Data 2014 files: `reviews_<Category>_5.json.gz` + `meta_<Category>.json.gz`.

This reproduces the standard generative-recommendation preprocessing (S3-Rec, P5, TIGER, ...) from the raw files:
every review is kept (ratings and duplicate reviews included), an iterative `min_count`-core filter is applied to users
and items, and each user's items are sorted by `unixReviewTime` with ties kept in file order.

Numbering (documented because every downstream id depends on it):
  * users 0..U-1 are the users that survive the filter, in order of their first review in the reviews file;
  * items 1..N are numbered in order of first appearance when the filtered sequences are read user by user
    (user 0's chronological sequence first, then user 1's, ...).

Speed: reading is the bottleneck of a naive implementation (per-line `json.loads`, `ast.literal_eval` of every meta
line: ~200 us each). Here one background thread decompresses the memory-mapped reviews and then meta file (zlib
releases the GIL, so this runs on a second core, and the GIL switch interval is shortened meanwhile so the reader gets
the GIL back at once; the meta file is read ahead, up to `_META_BUFFER_BYTES`, while the reviews are parsed), every
review line is parsed in full by the C JSON scanner in cache-sized blocks, ids are factorised per block
with dicts, and everything after that is vectorised numpy. Meta lines are parsed in full only for the items that
survive the filter (the asin is read with a regex first; the other lines, usually most of the file, are only checked
to start like a dict with an asin), through the C JSON parser where that provably gives what `ast.literal_eval`
gives (`_literal_via_json`), else with `ast.literal_eval` itself.

Errors: every problem with the input raises `DataError` naming the file, the line and the problem.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import itertools
import json
import mmap
import operator
import re
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxrec.data.types import Catalog, DataError, Dataset, unescape_html

REVIEW_FIELDS = ("reviewerID", "asin", "unixReviewTime")  # the fields the preprocessing needs
_READ_BYTES = 1 << 23  # compressed bytes per zlib call in the reader thread (few calls: few GIL hand-offs)
_FIRST_READ_BYTES = 1 << 16
_MAX_OUTPUT_BYTES = 1 << 25  # bound on one zlib call's output (a gzip bomb cannot exhaust memory at once)
_REVIEWS_BUFFER_BYTES = 1 << 26  # read-ahead of the reviews file
_META_BUFFER_BYTES = 1 << 28  # read-ahead of the meta file, decompressed while the reviews are parsed
_BLOCK_BYTES = 1 << 16  # review lines are parsed in blocks this size: cache-resident (2-3x faster than MiBs)
_META_BLOCK_BYTES = 1 << 18  # meta lines are longer and mostly skipped: fewer, larger blocks
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_REVIEWS_RE = re.compile(r"^reviews_(?P<category>.+)_5\.json(?:\.gz)?$")


# ---------------------------------------------------------------------------------------------------------- files


def find_amazon2014_files(path: str | Path, category: str | None = None) -> tuple[str, Path, Path]:
    """(category, reviews file, meta file) for a folder holding `reviews_<C>_5.json[.gz]` and `meta_<C>.json[.gz]`.

    `path` may also be the reviews file itself. The category is inferred when the folder holds exactly one reviews file.
    """
    path = Path(path)
    if path.is_file():
        match = _REVIEWS_RE.match(path.name)
        if match is None:
            raise DataError(f"{path}: expected a folder or a file named reviews_<Category>_5.json[.gz]")
        category = category or match["category"]
        path = path.parent
    if not path.is_dir():
        raise DataError(f"{path}: no such folder (expected one holding reviews_<Category>_5.json.gz and "
                        f"meta_<Category>.json.gz)")
    if category is None:
        found = sorted({m["category"] for p in path.iterdir() if (m := _REVIEWS_RE.match(p.name))})
        if not found:
            raise DataError(f"{path}: no reviews_<Category>_5.json.gz (or .json) file in this folder")
        if len(found) > 1:
            raise DataError(f"{path}: several categories ({', '.join(found)}); pass category=")
        category = found[0]
    reviews = _existing(path, f"reviews_{category}_5.json")
    meta = _existing(path, f"meta_{category}.json")
    return category, reviews, meta


def _existing(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: missing {stem}.gz (or {stem})")


# --------------------------------------------------------------------------------------------- chunked reading


_GZIP_MAGIC = b"\x1f\x8b"


def _gunzip(data: memoryview, put: Callable[[bytes], bool]) -> None:
    """Decompress (multi-member) gzip `data` into `put` (which returns False to stop), in large zlib calls.

    The reader thread needs the GIL once per zlib call (which releases it while inflating): `data` is a memoryview of
    the mapped file, so there is no read call to wait on the GIL after; `gzip.GzipFile` would take it back every
    8 KiB. zlib checks the CRC and length of each member.
    """
    decompressor, started, pos, size, end = zlib.decompressobj(31), False, 0, _FIRST_READ_BYTES, len(data)
    while pos < end:
        piece = data[pos:pos + size]
        size = min(2 * size, _READ_BYTES)  # small first pieces: the consumer starts at once
        started = True
        out = decompressor.decompress(piece, _MAX_OUTPUT_BYTES)
        if out and not put(out):
            return
        if decompressor.eof:  # end of a member: what follows is the next member (or zero padding)
            pos += len(piece) - len(decompressor.unused_data)
            while pos < end and data[pos] == 0:
                pos += 1
            decompressor, started = zlib.decompressobj(31), False
        else:
            pos += len(piece) - len(decompressor.unconsumed_tail)
    if started and not decompressor.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")


def _produce(path: Path, put: Callable[[bytes], bool]) -> None:
    """The content of `path` into `put`, gunzipped when it starts with the gzip magic bytes (whatever its name)."""
    with open(path, "rb") as stream:
        gzipped = stream.read(2) == _GZIP_MAGIC
        stream.seek(0)
        if not gzipped:
            size = _FIRST_READ_BYTES
            while (chunk := stream.read(size)) and put(chunk):
                size = min(2 * size, _READ_BYTES)
            return
        try:
            data: mmap.mmap | bytes = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # a file that cannot be mapped
            data = stream.read()
    _gunzip(memoryview(data), put)  # the map outlives the file object; it is closed when collected


class _Buffer:
    """A bounded FIFO of byte chunks between the reader thread and one consumer; errors travel to the consumer."""

    def __init__(self, budget: int) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._budget = budget
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def put(self, chunk: bytes) -> bool:
        """Append `chunk` once there is room; False when the consumer has gone (the reader should stop)."""
        with self._cond:
            while self._bytes >= self._budget and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._chunks.append(chunk)
            self._bytes += len(chunk)
            self._cond.notify_all()
            return True

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._done, self._error = True, error
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._cond.notify_all()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            with self._cond:
                while not self._chunks and not self._done:
                    self._cond.wait()
                if not self._chunks:
                    if self._error is not None:
                        raise self._error
                    return
                chunk = self._chunks.popleft()
                self._bytes -= len(chunk)
                self._cond.notify_all()
            yield chunk


class _Prefetcher:
    """Reads files one after the other in one background thread, each into its own bounded buffer.

    zlib and file reads release the GIL, so decompression runs on another core while the main thread parses; and
    the next file (the meta file) is decompressed ahead while the main thread still parses the previous one.
    Use as a context manager: leaving it stops and joins the thread.
    """

    def __init__(self, paths: Sequence[Path], budgets: Sequence[int]) -> None:
        self.buffers = [_Buffer(budget) for budget in budgets]
        self._thread = threading.Thread(target=self._run, args=(list(paths),), name="jaxrec-prefetch", daemon=True)
        self._thread.start()

    def _run(self, paths: list[Path]) -> None:
        for path, buffer in zip(paths, self.buffers):
            try:
                _produce(path, buffer.put)
            except BaseException as error:  # noqa: BLE001 - handed to the consumer
                buffer.finish(error)
            else:
                buffer.finish()

    def __enter__(self) -> _Prefetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for buffer in self.buffers:
            buffer.close()
        self._thread.join()


class _LineBlocks:
    """Blocks of about `block_bytes` of whole lines (without the final newline) from the chunks of a file, as
    zero-copy memoryviews of the chunks (or bytes where a line straddles two chunks).

    The consumer advances `line_no` (the number of the next block's first line) by the number of lines it split a
    block into: it splits anyway, and counting here would scan every byte once more.
    """

    def __init__(self, path: Path, chunks: Iterable[bytes], block_bytes: int | None = None) -> None:
        self.path = path
        self.chunks = chunks
        self.block_bytes = block_bytes or _BLOCK_BYTES
        self.line_no = 1

    def __iter__(self) -> Iterator[bytes | memoryview]:
        carry, first = b"", True
        try:
            for chunk in self.chunks:
                if first:
                    chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
                view, pos, size = memoryview(chunk), 0, len(chunk)
                if carry:
                    newline = chunk.find(b"\n")
                    if newline < 0:
                        carry += chunk
                        continue
                    yield carry + view[:newline]
                    carry, pos = b"", newline + 1
                while pos < size:
                    cut = chunk.rfind(b"\n", pos, pos + self.block_bytes)
                    if cut < 0 and (cut := chunk.find(b"\n", pos + self.block_bytes)) < 0:
                        break
                    yield view[pos:cut]
                    pos = cut + 1
                carry = chunk[pos:]
        except (EOFError, zlib.error) as error:
            raise DataError(f"{self.path}: truncated or corrupt gzip file (the data breaks off after line "
                            f"{self.line_no - 1}): {error}") from error
        except OSError as error:
            raise DataError(f"{self.path}: cannot read the file: {error}") from error
        if carry:
            yield carry


# ----------------------------------------------------------------------------------------------------- reviews

_SCAN = json.JSONDecoder().scan_once  # the C scanner: one call per line, without json.loads' Python overhead
_REVIEW_GETTER = operator.itemgetter(*REVIEW_FIELDS)


def _parse_review_block(block: bytes | memoryview) -> tuple[tuple, tuple, np.ndarray, int] | None:
    """(users, items, times, lines) of a block of review lines, or None on anything unusual (then the line-by-line
    parser handles the block: blank lines, surrounding whitespace, or the precise error).

    Every line is parsed in full by the C JSON scanner. The ids' types are checked by `_encode`, on new ids only.
    """
    try:
        text = str(block, "utf-8")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        records: list[Any] = []
        append, scan, pos, size = records.append, _SCAN, 0, len(text)
        while True:  # one value per line, ending right at the newline (no split: 15% faster)
            record, end = scan(text, pos)  # StopIteration / JSONDecodeError on blank or bad lines
            append(record)
            if end == size:
                break
            if text[end] != "\n":
                return None  # trailing data or whitespace
            pos = end + 1
        users, items, times = zip(*map(_REVIEW_GETTER, records))  # TypeError / KeyError: not a dict / missing
        if set(map(type, times)) != {int}:
            return None
        return users, items, np.array(times, dtype=np.int64), len(records)  # OverflowError beyond int64
    except Exception:  # noqa: BLE001 - the line-by-line parser reports the precise problem
        return None


def _parse_review_block_slow(block: bytes | memoryview, first_line: int, path: Path
                             ) -> tuple[list, list, np.ndarray, int, int]:
    """(users, items, times, lines, blank lines), line by line; `DataError` naming the line on bad input."""
    users, items, times, blank = [], [], [], 0
    lines = bytes(block).split(b"\n")
    for offset, raw in enumerate(lines):
        line_no = first_line + offset
        if not raw.strip():
            blank += 1
            continue
        record = _json_line(raw, path, line_no)
        user, item, time = _review_fields(record, path, line_no)
        users.append(user)
        items.append(item)
        times.append(time)
    return users, items, np.array(times, dtype=np.int64), len(lines), blank


def _json_line(raw: bytes, path: Path, line_no: int) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: line {line_no}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line {line_no}: malformed JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: line {line_no}: expected a JSON object, got {type(record).__name__}")
    return record


def _review_fields(record: dict, path: Path, line_no: int) -> tuple[str, str, int]:
    for field in REVIEW_FIELDS:
        if field not in record:
            raise DataError(f"{path}: line {line_no}: missing required field {field!r}")
    user, item, time = (record[field] for field in REVIEW_FIELDS)
    for field, value in (("reviewerID", user), ("asin", item)):
        if not isinstance(value, str) or not value:
            raise DataError(f"{path}: line {line_no}: field {field!r} must be a non-empty string, got {value!r}")
    if type(time) is not int or not _INT64_MIN <= time <= _INT64_MAX:
        raise DataError(f"{path}: line {line_no}: field 'unixReviewTime' must be an integer (seconds), got {time!r}")
    return user, item, time


def _encode(values: Sequence[str], index: dict[str, int], position: int) -> np.ndarray | None:
    """Sparse codes of `values` (the review number of each value's first review), adding new values to `index`.

    All C-level (`map` of `dict.setdefault` over a counter), per block while the strings are in cache; `_dense`
    turns the codes into 0..n-1 at the end. None if a new value is not a non-empty string (the caller then re-reads
    the block line by line, which raises): every value in `index` has been checked once, so only the new ones, the
    last keys of `index`, are checked.
    """
    before = len(index)
    try:
        codes = np.fromiter(map(index.setdefault, values, itertools.count(position)), dtype=np.int64,
                            count=len(values))
    except TypeError:  # unhashable: not a string
        return None
    fresh = len(index) - before
    if fresh and (set(map(type, itertools.islice(reversed(index), fresh))) != {str} or "" in index):
        return None
    return codes


def _dense(codes: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """Sparse codes as 0..len(index)-1, in the order values entered `index` (order of first appearance)."""
    lookup = np.zeros(max(len(codes), 1), dtype=np.int32)
    lookup[np.fromiter(index.values(), dtype=np.int64, count=len(index))] = np.arange(len(index), dtype=np.int32)
    return lookup[codes]


def _read_reviews(path: Path, chunks: Iterable[bytes]) -> dict[str, Any]:
    """User codes, item codes and times of every review in file order, with the names of the codes (codes are in
    order of first appearance)."""
    user_index: dict[str, int] = {}
    item_index: dict[str, int] = {}
    users, items, times = [], [], []
    blank = reviews = 0
    blocks = _LineBlocks(path, chunks)
    for block in blocks:
        parsed = _parse_review_block(block)
        codes = None
        if parsed is not None:
            user_codes = _encode(parsed[0], user_index, reviews)
            item_codes = _encode(parsed[1], item_index, reviews) if user_codes is not None else None
            codes = None if item_codes is None else (user_codes, item_codes)
            block_times, lines = parsed[2], parsed[3]
        if codes is None:  # unusual or bad block: line by line (raises on bad input)
            block_users, block_items, block_times, lines, block_blank = _parse_review_block_slow(
                block, blocks.line_no, path)
            blank += block_blank
            codes = (_encode(block_users, user_index, reviews), _encode(block_items, item_index, reviews))
        blocks.line_no += lines
        if len(block_times):
            users.append(codes[0])
            items.append(codes[1])
            times.append(block_times)
            reviews += len(block_times)
    if not users:
        raise DataError(f"{path}: empty file: no reviews")
    return {"users": _dense(np.concatenate(users), user_index), "items": _dense(np.concatenate(items), item_index),
            "times": np.concatenate(times), "user_names": list(user_index), "item_names": list(item_index),
            "blank_lines": blank}


# --------------------------------------------------------------------------------------------- k-core, ordering


def iterative_kcore(users: np.ndarray, items: np.ndarray, min_count: int) -> tuple[np.ndarray, int]:
    """(indices of the kept interactions in input order, rounds that removed something) of the iterative k-core.

    Each round drops every interaction whose user or item has fewer than `min_count` interactions left, until none
    does. Every interaction counts (duplicates too). The result, the largest sub-multigraph where every user and item
    has >= min_count interactions, does not depend on the removal order.
    """
    keep = np.arange(len(users))
    rounds = 0
    if min_count <= 1:
        return keep, rounds
    users, items = np.asarray(users), np.asarray(items)
    while len(keep):
        user_counts = np.bincount(users, minlength=1)
        item_counts = np.bincount(items, minlength=1)
        ok = (user_counts[users] >= min_count) & (item_counts[items] >= min_count)
        if ok.all():
            break
        keep, users, items = keep[ok], users[ok], items[ok]
        rounds += 1
    return keep, rounds


def _chronological(user_codes: np.ndarray, item_codes: np.ndarray, times: np.ndarray, num_users: int
                   ) -> dict[str, np.ndarray]:
    """Renumber the (already filtered, file-ordered) interactions and sort them per user by time, ties in file order.

    Returns kept user codes (in new-id order), kept item codes (in new-id order), offsets, items (1-based) and the
    sorted user / time columns.
    """
    present = np.zeros(num_users, dtype=bool)
    present[user_codes] = True
    kept_users = np.flatnonzero(present)  # codes were assigned by first appearance in the file
    user_map = np.cumsum(present) - 1
    new_users = user_map[user_codes]
    order = np.lexsort((np.arange(len(times)), times, new_users))  # explicit file-order tie-break
    seq_users, seq_items, seq_times = new_users[order], item_codes[order], times[order]
    uniques, first = np.unique(seq_items, return_index=True)
    kept_items = uniques[np.argsort(first, kind="stable")]
    item_map = np.zeros(int(uniques[-1]) + 1, dtype=np.int32)
    item_map[kept_items] = np.arange(1, len(kept_items) + 1, dtype=np.int32)
    offsets = np.zeros(len(kept_users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(seq_users, minlength=len(kept_users)), out=offsets[1:])
    return {"users": kept_users, "items": kept_items, "offsets": offsets, "sequence": item_map[seq_items],
            "seq_users": seq_users, "seq_times": seq_times}


# -------------------------------------------------------------------------------------------------------- meta

# The asin of a meta line written as the real files write it (first key, single quotes), else b"" (the line is then
# parsed in full). One match per newline: the literal prefix lets the regex engine skip ahead 10x faster than ^.
_META_ASIN = re.compile(rb"""\n(?:\{'asin': '([^'\\\n]+)'[,}])?""")


def _literal_via_json(text: str) -> Any:
    r"""The value of the Python literal `text` through the C JSON parser, or None when that is not provably exact.

    Escapes are rewritten first: \\, \' and \" become private placeholders, \xNN becomes \u00NN, and \n \r \t \b
    \f \uNNNN (no surrogates) stay; any other escape, a placeholder already in the text, or one of json's own words
    (true, null, NaN, ...) means "not exact". Then every quote is a string delimiter, and `_quotes_to_json` turns
    each Python string token into the JSON string token with the same content, leaving the text between tokens as it
    was. JSON's grammar on that text is a subset of Python's with the same values, so a successful JSON parse gives
    the value `ast.literal_eval` gives. Anything else (tuples, True, trailing commas, u'' prefixes, tabs inside
    strings, ...) fails the parse and is left to `ast.literal_eval`.
    """
    if ("true" in text or "false" in text or "null" in text or "NaN" in text or "Infinity" in text
            or "\ue000" in text or "\ue001" in text or "\ue002" in text):
        return None
    escaped = "\\" in text
    if escaped:
        try:
            text = _PY_ESCAPE.sub(_json_escape, text)
        except ValueError:
            return None
    converted = _quotes_to_json(text)
    if converted is None:
        return None
    if escaped:
        converted = converted.replace("\ue000", "\\\\").replace("\ue001", "'").replace("\ue002", '\\"')
    try:
        value, end = _SCAN(converted, 0)
    except (StopIteration, ValueError):
        return None
    return value if end == len(converted) else None


def _quotes_to_json(text: str) -> str | None:
    """`text` (no escaped quotes left) with every Python string token as a JSON string token, or None.

    Split on ", the outside parts hold the '...' tokens: when each holds an even number of ' (no '...' token holds
    a "), swapping ' for " there is exact. Else, split on ', the outside parts hold the "..." tokens: when each holds
    an even number of " (no "..." token holds a '), the '...' contents (odd parts) only need their " escaped.
    Lines with both kinds (a '...' holding " and a "..." holding ') are left to `ast.literal_eval`.
    """
    parts = text.split('"')
    if len(parts) % 2 and not any(part.count("'") % 2 for part in parts[0::2]):
        parts[0::2] = [part.replace("'", '"') for part in parts[0::2]]
        return '"'.join(parts)
    parts = text.split("'")
    if len(parts) % 2 and not any(part.count('"') % 2 for part in parts[0::2]):
        parts[1::2] = [part.replace('"', '\\"') for part in parts[1::2]]
        return '"'.join(parts)
    return None


_PY_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"\\": "\ue000", "'": "\ue001", '"': "\ue002", "n": "\\n", "r": "\\r", "t": "\\t", "b": "\\b",
                   "f": "\\f"}


def _json_escape(match: re.Match) -> str:
    """The JSON spelling of one Python string escape; ValueError when there is none with the same meaning."""
    code = match[1]
    if len(code) == 1:
        return _SIMPLE_ESCAPES[code] if code in _SIMPLE_ESCAPES else _not_exact()
    if code[0] == "x":
        return "\\u00" + code[1:]
    return "\\" + code if not 0xD800 <= int(code[1:], 16) <= 0xDFFF else _not_exact()  # JSON pairs surrogates


def _not_exact() -> str:
    raise ValueError("no exact JSON spelling")


def parse_meta_line(raw: bytes | str, path: Path | str = "<meta>", line_no: int = 0) -> dict:
    """One meta line (a Python dict literal with a non-empty 'asin') as a dict; `DataError` naming file and line."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: line {line_no}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
    text = raw.strip()
    value = _literal_via_json(text)
    if value is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences warn, and still parse
                value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
            raise DataError(f"{path}: line {line_no}: not a Python dict literal "
                            f"({type(error).__name__}: {error})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: line {line_no}: expected a Python dict literal, got {type(value).__name__}")
    asin = value.get("asin")
    if not isinstance(asin, str) or not asin:
        raise DataError(f"{path}: line {line_no}: missing or empty 'asin' (a non-empty string is required)")
    return value


def _text(value: Any, field: str, path: Path, line_no: int) -> tuple[str | None, bool]:
    """(HTML-unescaped, stripped text or None, whether unescaping changed it)."""
    if value is None:
        return None, False
    if not isinstance(value, str):
        raise DataError(f"{path}: line {line_no}: field {field!r} must be a string, got {type(value).__name__}")
    if "&" not in value:
        return value.strip() or None, False
    unescaped = unescape_html(value)
    return unescaped.strip() or None, unescaped != value


def _price(value: Any, path: Path, line_no: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{path}: line {line_no}: field 'price' must be a number, got {value!r}")
    return float(value)


def _categories(value: Any, path: Path, line_no: int) -> tuple[tuple[str, ...], ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(level, (list, tuple)) and set(map(type, level)) <= {str} for level in value):
        raise DataError(f"{path}: line {line_no}: field 'categories' must be a list of lists of strings")
    return tuple(tuple(level) for level in value if level) or None


def _meta_record(value: dict, path: Path, line_no: int, counts: dict[str, int]) -> dict[str, Any]:
    title, title_changed = _text(value.get("title"), "title", path, line_no)
    brand, brand_changed = _text(value.get("brand"), "brand", path, line_no)
    description, description_changed = _text(value.get("description"), "description", path, line_no)
    counts["titles_html_unescaped"] += title_changed
    counts["brands_html_unescaped"] += brand_changed
    counts["descriptions_html_unescaped"] += description_changed
    return {"title": title, "brand": brand, "description": description,
            "price": _price(value.get("price"), path, line_no),
            "categories": _categories(value.get("categories"), path, line_no)}


def _meta_lines(block: bytes | memoryview, wanted: dict[bytes, int]) -> tuple[list[tuple[int, bytes]], int, int]:
    """([(offset, line) to parse in full], lines, non-blank lines) of a block of meta lines: the lines of wanted
    asins, and the lines whose asin the regex cannot read (parsed in full to find it, or to raise)."""
    data = b"\n" + block  # every line starts after a newline
    asins = _META_ASIN.findall(data)  # one entry per line: b"" where the regex cannot read the asin
    hits = [offset for offset, asin in enumerate(asins) if not asin or asin in wanted]
    if not hits:
        return [], len(asins), len(asins)
    starts = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10).tolist() + [len(data)]
    lines = [(k, data[starts[k] + 1:starts[k + 1]]) for k in hits]
    blank = sum(1 for _, line in lines if not line.strip())
    return [(k, line) for k, line in lines if line.strip()] if blank else lines, len(asins), len(asins) - blank


def _read_meta(path: Path, wanted: dict[bytes, int], chunks: Iterable[bytes]
               ) -> tuple[dict[int, dict[str, Any]], dict[str, int]]:
    """({item index: fields}, counts) for the meta lines whose asin is in `wanted` (asin bytes -> item index).

    Only the lines of wanted items (and lines whose asin the regex cannot read) are parsed in full and validated;
    the others, usually most of the file, are only checked to start like a dict with an asin.
    """
    found: dict[int, dict[str, Any]] = {}
    counts = {"meta_lines_read": 0, "meta_lines_parsed": 0, "meta_duplicate_asins": 0, "titles_html_unescaped": 0,
              "brands_html_unescaped": 0, "descriptions_html_unescaped": 0}
    blocks = _LineBlocks(path, chunks, _META_BLOCK_BYTES)
    for block in blocks:
        first_line = blocks.line_no
        to_parse, lines, nonblank = _meta_lines(block, wanted)
        blocks.line_no += lines
        counts["meta_lines_read"] += nonblank
        for offset, line in to_parse:
            value = parse_meta_line(line, path, first_line + offset)
            counts["meta_lines_parsed"] += 1
            index = wanted.get(value["asin"].encode("utf-8"))
            if index is None:
                continue
            if index in found:
                counts["meta_duplicate_asins"] += 1
                continue
            found[index] = _meta_record(value, path, first_line + offset, counts)
    if counts["meta_lines_read"] == 0:
        raise DataError(f"{path}: empty file: no meta lines")
    return found, counts


# -------------------------------------------------------------------------------------------------------- main


def read_amazon2014(path: str | Path, category: str | None = None, min_count: int = 5) -> Dataset:
    """The standard preprocessing of one raw Amazon 2014 category (see the module docstring for the numbering).

    `path` is a folder holding `reviews_<Category>_5.json[.gz]` and `meta_<Category>.json[.gz]` (or the reviews
    file); `category` is required when the folder holds several categories. `min_count` is the k of the iterative
    k-core on users and items (every review counts, duplicates included); 1 or less keeps everything.
    """
    if min_count < 0:
        raise ValueError(f"min_count must be >= 0, got {min_count}")
    category, reviews_path, meta_path = find_amazon2014_files(path, category)
    with _quick_gil_handoff(), _Prefetcher([reviews_path, meta_path],
                                           [_REVIEWS_BUFFER_BYTES, _META_BUFFER_BYTES]) as prefetch:
        dataset = _preprocess(category, reviews_path, meta_path, min_count, prefetch.buffers)
    return dataset


_HANDOFF_LOCK = threading.Lock()
_handoff_state = {"users": 0, "saved": 0.005}


@contextlib.contextmanager
def _quick_gil_handoff(interval: float = 0.0005) -> Iterator[None]:
    """A shorter GIL switch interval (`sys.setswitchinterval`) while the reader thread feeds the parser.

    After each zlib call the reader waits for the GIL, which the busy main thread only hands over once the switch
    interval (5 ms by default) has passed: ~45 waits per 1M reviews, ~10% of the run. The interval is restored when
    the last concurrent reader finishes; other threads of the process only see more frequent GIL hand-offs meanwhile.
    """
    with _HANDOFF_LOCK:
        if _handoff_state["users"] == 0:
            _handoff_state["saved"] = sys.getswitchinterval()
            sys.setswitchinterval(min(interval, _handoff_state["saved"]))
        _handoff_state["users"] += 1
    try:
        yield
    finally:
        with _HANDOFF_LOCK:
            _handoff_state["users"] -= 1
            if _handoff_state["users"] == 0:
                sys.setswitchinterval(_handoff_state["saved"])


def _preprocess(category: str, reviews_path: Path, meta_path: Path, min_count: int,
                chunks: Sequence[Iterable[bytes]]) -> Dataset:
    """`read_amazon2014` on the decompressed chunks of the reviews (chunks[0]) and meta (chunks[1]) files."""
    reviews = _read_reviews(reviews_path, chunks[0])
    user_codes, item_codes, times = reviews["users"], reviews["items"], reviews["times"]
    user_names, item_names = reviews["user_names"], reviews["item_names"]
    keep, rounds = iterative_kcore(user_codes, item_codes, min_count)
    if not len(keep):
        raise DataError(f"{reviews_path}: no interactions survive the {min_count}-core filter "
                        f"({len(user_codes)} reviews read)")
    seq = _chronological(user_codes[keep], item_codes[keep], times[keep], len(user_names))
    raw_items = [item_names[code] for code in seq["items"].tolist()]
    meta, meta_counts = _read_meta(meta_path, {asin.encode("utf-8"): k for k, asin in enumerate(raw_items)}, chunks[1])
    num_items = len(raw_items)
    pair_keys = np.sort(seq["seq_users"].astype(np.int64) * (num_items + 1) + seq["sequence"])
    same_user = seq["seq_users"][1:] == seq["seq_users"][:-1]
    report = {
        "source": "amazon2014", "category": category, "reviews_file": str(reviews_path), "meta_file": str(meta_path),
        "min_count": min_count, "reviews_read": len(user_codes), "blank_lines": reviews["blank_lines"],
        "users_read": len(user_names), "items_read": len(item_names), "kcore_iterations": rounds,
        "users_removed_by_kcore": len(user_names) - len(seq["users"]),
        "items_removed_by_kcore": len(item_names) - num_items,
        "interactions_removed_by_kcore": len(user_codes) - len(keep),
        "users": len(seq["users"]), "items": num_items, "interactions": len(keep),
        "duplicate_user_item_reviews_kept": int(np.count_nonzero(pair_keys[1:] == pair_keys[:-1])),
        "tied_timestamps": int(np.count_nonzero(same_user & (seq["seq_times"][1:] == seq["seq_times"][:-1]))),
        "items_without_meta": num_items - len(meta),
        **meta_counts,
        "numbering": "users by first review in the reviews file; items by first appearance in the chronological "
                     "sequences, user by user",
    }
    user_ids = tuple(user_names[code] for code in seq["users"].tolist())
    return Dataset(f"amazon2014-{category}", _catalog(raw_items, meta), user_ids, seq["offsets"], seq["sequence"],
                   report)


def _catalog(raw_items: list[str], meta: dict[int, dict[str, Any]]) -> Catalog:
    empty: dict[str, Any] = {}
    rows = [meta.get(index, empty) for index in range(len(raw_items))]
    return Catalog(
        raw_ids=tuple(raw_items),
        titles=tuple(row.get("title") for row in rows),
        categories=tuple(row.get("categories") for row in rows),
        brands=tuple(row.get("brand") for row in rows),
        prices=tuple(row.get("price") for row in rows),
        descriptions=tuple(row.get("description") for row in rows),
    )
