"""Readers for MovieLens 1M (`ratings.dat`, `movies.dat`) and 100K (`u.data`, `u.item`, `u.genre`), auto-detected.

Every rating is kept (no k-core: both datasets already have >= 20 ratings per user), each user's movies are sorted
by timestamp with ties kept in file order (ML-1M has many same-second ratings, so this matters), and:
  * users 0..U-1 are numbered in order of their first rating in the ratings file; `user_ids` are the MovieLens user
    ids as strings;
  * items 1..N are numbered in order of first appearance in the chronological sequences read user by user;
    `raw_ids` are the MovieLens movie ids as strings. Movies never rated are not in the catalogue (counted in
    `report["movies_never_rated"]`);
  * titles come from the movies file (latin-1), genres become categories, each genre a one-element path.

Bad input raises `DataError` naming the file, the line and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from jaxrec.data.types import Catalog, DataError, Dataset

# The 19 genres of ML-100K in flag order, used when `u.genre` is absent.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")
_VARIANTS = {"ml-1m": ("ratings.dat", "movies.dat", "::"), "ml-100k": ("u.data", "u.item", "\t")}
_RATINGS_FAST = {separator: re.compile(rf"(?:[0-9]{{1,15}}{separator}[0-9]{{1,15}}{separator}[0-9]{{1,15}}{separator}"
                                       rf"[0-9]{{1,15}}\r?\n)*") for separator in ("::", "\t")}


def find_movielens(path: str | Path) -> tuple[str, Path]:
    """(variant, folder): the folder holding ratings.dat + movies.dat (ml-1m) or u.data + u.item (ml-100k).

    `path` may also be a folder holding a single `ml-1m/` or `ml-100k/` folder (what the zip files unpack to).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder (expected MovieLens ratings.dat + movies.dat or u.data + u.item)")
    found = [variant for variant, (ratings, _, _) in _VARIANTS.items() if (path / ratings).is_file()]
    if not found:
        nested = [variant for variant in _VARIANTS if (path / variant).is_dir()]
        if len(nested) == 1:
            return find_movielens(path / nested[0])
        raise DataError(f"{path}: no MovieLens files (expected ratings.dat + movies.dat for ml-1m, or u.data + "
                        f"u.item for ml-100k)")
    if len(found) > 1:
        raise DataError(f"{path}: holds both ml-1m and ml-100k files; use one folder per dataset")
    variant = found[0]
    movies = path / _VARIANTS[variant][1]
    if not movies.is_file():
        raise DataError(f"{path}: {variant} ratings file present but {movies.name} is missing")
    return variant, path


def read_movielens(path: str | Path) -> Dataset:
    """MovieLens 1M or 100K (auto-detected) as a `Dataset`; see the module docstring for ordering and numbering."""
    variant, folder = find_movielens(path)
    ratings_name, movies_name, separator = _VARIANTS[variant]
    ratings = _read_ratings(folder / ratings_name, separator)
    if variant == "ml-1m":
        movies = _read_movies_1m(folder / movies_name)
    else:
        movies = _read_movies_100k(folder / movies_name, _read_genres(folder / "u.genre"))
    return _dataset(variant, ratings, movies, folder)


# ----------------------------------------------------------------------------------------------------- ratings


def _read_text(path: Path) -> str:
    """A latin-1 text file (the MovieLens encoding); `DataError` if it has no non-blank line."""
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as error:
        raise DataError(f"{path}: cannot read the file: {error}") from error
    if not text.strip():
        raise DataError(f"{path}: empty file")
    return text


def _lines(text: str) -> list[str]:
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]


def _read_ratings(path: Path, separator: str) -> dict[str, np.ndarray]:
    """Users, movies and times (int64) of every rating, in file order.

    Fast path: one regex check of the whole file (four integer fields per line, no blank lines) and one numpy parse.
    Anything else (blank lines, fractional ratings, bad lines) is read line by line, with exact errors.
    """
    text = _read_text(path)
    if not text.endswith("\n"):
        text += "\n"
    if _RATINGS_FAST[separator].fullmatch(text):
        try:
            values = np.fromstring(text.replace(separator, " "), dtype=np.int64, sep=" ").reshape(-1, 4)
            return {"users": values[:, 0], "movies": values[:, 1], "times": values[:, 3], "blank_lines": 0}
        except ValueError:
            pass
    return _read_ratings_by_line(path, _lines(text), separator)


def _read_ratings_by_line(path: Path, lines: list[str], separator: str) -> dict[str, np.ndarray]:
    numbers = [k + 1 for k, line in enumerate(lines) if line.strip()]
    rows = [lines[k - 1].split(separator) for k in numbers]
    try:
        if set(map(len, rows)) != {4}:
            raise ValueError("field count")
        users, movies, scores, times = zip(*rows)
        columns = [_digits(users), _digits(movies), _digits(times)]
        np.array(scores, dtype=np.float64)  # ratings must be numbers (all are kept)
    except (ValueError, OverflowError):
        _raise_rating_error(path, rows, numbers, separator)
    return {"users": columns[0], "movies": columns[1], "times": columns[2], "blank_lines": len(lines) - len(rows)}


def _digits(column: Sequence[str]) -> np.ndarray:
    """A column of non-negative decimal integers as int64; ValueError on anything else."""
    joined = "".join(column)
    if "" in column or not (joined.isascii() and joined.isdigit()):
        raise ValueError("not an integer")
    return np.array(column, dtype=np.int64)


def _raise_rating_error(path: Path, rows: list[list[str]], numbers: list[int], separator: str) -> NoReturn:
    names = ("user id", "movie id", "rating", "timestamp")
    for row, line_no in zip(rows, numbers):
        if len(row) != 4:
            raise DataError(f"{path}: line {line_no}: expected 4 fields separated by {separator!r} "
                            f"(user, movie, rating, timestamp), got {len(row)}")
        for name, value in zip(names, row):
            if name == "rating":
                try:
                    float(value)
                except ValueError:
                    raise DataError(f"{path}: line {line_no}: {name} must be a number, got {value!r}") from None
            elif not (value.isascii() and value.isdigit()) or int(value) > np.iinfo(np.int64).max:
                raise DataError(f"{path}: line {line_no}: {name} must be a non-negative integer, got {value!r}")
    raise DataError(f"{path}: unreadable ratings")


# ------------------------------------------------------------------------------------------------------ movies


def _movie_id(value: str, path: Path, line_no: int) -> int:
    if not (value.isascii() and value.isdigit()):
        raise DataError(f"{path}: line {line_no}: movie id must be a non-negative integer, got {value!r}")
    return int(value)


def _add_movie(movies: dict[int, dict[str, Any]], movie: int, record: dict[str, Any], path: Path,
               line_no: int) -> None:
    if movie in movies:
        raise DataError(f"{path}: line {line_no}: movie id {movie} is listed twice")
    movies[movie] = record


def _read_movies_1m(path: Path) -> dict[int, dict[str, Any]]:
    """{movie id: {title, categories}} from ML-1M `movies.dat` (`MovieID::Title::Genres`, genres |-separated)."""
    movies: dict[int, dict[str, Any]] = {}
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3:
            raise DataError(f"{path}: line {line_no}: expected 3 fields separated by '::' (MovieID::Title::Genres), "
                            f"got {len(fields)}")
        genres = tuple((genre,) for genre in fields[2].strip().split("|") if genre)
        _add_movie(movies, _movie_id(fields[0], path, line_no),
                   {"title": fields[1].strip() or None, "categories": genres or None}, path, line_no)
    return movies


def _read_genres(path: Path) -> tuple[str, ...]:
    """ML-100K genre names in flag order from `u.genre` (`name|index`), or the standard 19 when it is absent."""
    if not path.is_file():
        return ML100K_GENRES
    names: dict[int, str] = {}
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        name, _, index = line.rpartition("|")
        if not name or not (index.isascii() and index.isdigit()):
            raise DataError(f"{path}: line {line_no}: expected 'genre name|index', got {line!r}")
        names[int(index)] = name
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{path}: genre indices must be 0..{len(names) - 1}, got {sorted(names)}")
    return tuple(names[k] for k in range(len(names)))


def _read_movies_100k(path: Path, genres: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    """{movie id: {title, categories}} from ML-100K `u.item` (id|title|release|video release|IMDb URL|genre flags)."""
    movies: dict[int, dict[str, Any]] = {}
    expected = 5 + len(genres)
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != expected:
            raise DataError(f"{path}: line {line_no}: expected {expected} '|'-separated fields (id, title, release "
                            f"date, video release date, IMDb URL, {len(genres)} genre flags), got {len(fields)}")
        flags = fields[5:]
        if not set(flags) <= {"0", "1"}:
            raise DataError(f"{path}: line {line_no}: genre flags must be 0 or 1, got {'|'.join(flags)!r}")
        categories = tuple((genre,) for genre, flag in zip(genres, flags) if flag == "1")
        _add_movie(movies, _movie_id(fields[0], path, line_no),
                   {"title": fields[1].strip() or None, "categories": categories or None}, path, line_no)
    return movies


# ----------------------------------------------------------------------------------------------------- dataset


def _dataset(variant: str, ratings: dict[str, np.ndarray], movies: dict[int, dict[str, Any]],
             folder: Path) -> Dataset:
    users, movie_ids, times = ratings["users"], ratings["movies"], ratings["times"]
    raw_users, first_rating, user_codes = np.unique(users, return_index=True, return_inverse=True)
    user_rank = np.empty(len(raw_users), dtype=np.int64)
    user_rank[np.argsort(first_rating, kind="stable")] = np.arange(len(raw_users))
    new_users = user_rank[user_codes.reshape(-1)]
    order = np.lexsort((np.arange(len(times)), times, new_users))  # by user, then time, then file order
    seq_users, seq_movies, seq_times = new_users[order], movie_ids[order], times[order]
    raw_movies, first_seen, movie_codes = np.unique(seq_movies, return_index=True, return_inverse=True)
    movie_rank = np.empty(len(raw_movies), dtype=np.int64)
    movie_rank[np.argsort(first_seen, kind="stable")] = np.arange(len(raw_movies))
    items = movie_rank[movie_codes.reshape(-1)] + 1
    catalog_movies = raw_movies[np.argsort(first_seen, kind="stable")].tolist()
    offsets = np.zeros(len(raw_users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(seq_users, minlength=len(raw_users)), out=offsets[1:])
    user_ids = tuple(str(user) for user in raw_users[np.argsort(first_rating, kind="stable")].tolist())
    missing = [movie for movie in catalog_movies if movie not in movies]
    rows = [movies.get(movie, {}) for movie in catalog_movies]
    catalog = Catalog(raw_ids=tuple(str(movie) for movie in catalog_movies),
                      titles=tuple(row.get("title") for row in rows),
                      categories=tuple(row.get("categories") for row in rows))
    same_user = seq_users[1:] == seq_users[:-1]
    pairs = np.sort(seq_users * (len(catalog_movies) + 1) + items)
    report = {
        "source": "movielens", "variant": variant, "folder": str(folder),
        "ratings_read": len(times), "blank_lines": ratings["blank_lines"],
        "users": len(user_ids), "items": len(catalog_movies), "interactions": len(times),
        "movies_in_file": len(movies), "movies_never_rated": len(set(movies) - set(catalog_movies)),
        "rated_movies_without_metadata": len(missing),
        "tied_timestamps": int(np.count_nonzero(same_user & (seq_times[1:] == seq_times[:-1]))),
        "duplicate_user_item_ratings": int(np.count_nonzero(pairs[1:] == pairs[:-1])),
        "numbering": "users by first rating in the ratings file; items by first appearance in the chronological "
                     "sequences, user by user",
    }
    return Dataset(variant, catalog, user_ids, offsets, items.astype(np.int32), report)
