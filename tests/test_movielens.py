"""MovieLens 1M / 100K readers: exact hand-computed output on small folders and DataError on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from jaxrec.data.movielens import ML100K_GENRES, find_movielens, read_movielens
from jaxrec.data.types import DataError

RATINGS_1M = ["1::10::5::100", "2::20::3::50", "1::30::4::100", "1::20::2::90", "3::10::1::10", "2::10::4::40"]
MOVIES_1M = ["10::Toy Story (1995)::Animation|Children's|Comedy", "20::Mis\xe9rables, Les (1995)::Drama|Musical",
             "30::Heat (1995)::Action|Crime|Thriller", "40::Never Rated (2000)::Drama"]
RATINGS_100K = ["5\t1\t3\t881250949", "3\t2\t4\t881250940", "5\t2\t5\t881250949", "3\t1\t1\t881250950"]
MOVIES_100K = [
    "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
    "0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0",
    "3|Four Rooms (1995)|01-Jan-1995||http://y|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0",
]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + "\n" for line in lines).encode("latin-1"))


def ml1m(folder: Path, ratings: list[str] = RATINGS_1M, movies: list[str] = MOVIES_1M) -> Path:
    write_lines(folder / "ratings.dat", ratings)
    write_lines(folder / "movies.dat", movies)
    return folder


def ml100k(folder: Path, ratings: list[str] = RATINGS_100K, movies: list[str] = MOVIES_100K,
           genres: list[str] | None = None) -> Path:
    write_lines(folder / "u.data", ratings)
    write_lines(folder / "u.item", movies)
    if genres is not None:
        write_lines(folder / "u.genre", genres)
    return folder


def sequences(dataset) -> list[list[int]]:
    return [dataset.sequence(u).tolist() for u in range(dataset.num_users)]


def test_ml1m(tmp_path: Path) -> None:
    dataset = read_movielens(ml1m(tmp_path))
    # users by first rating: 1, 2, 3; user 1 = 20 (t90), 10 (t100), 30 (t100, after 10 in the file)
    assert dataset.name == "ml-1m"
    assert dataset.user_ids == ("1", "2", "3")
    assert dataset.catalog.raw_ids == ("20", "10", "30")
    assert sequences(dataset) == [[1, 2, 3], [2, 1], [2]]
    assert dataset.catalog.titles == ("Mis\xe9rables, Les (1995)", "Toy Story (1995)", "Heat (1995)")
    assert dataset.catalog.categories == ((("Drama",), ("Musical",)), (("Animation",), ("Children's",), ("Comedy",)),
                                          (("Action",), ("Crime",), ("Thriller",)))
    report = dataset.report
    assert {k: report[k] for k in ("ratings_read", "users", "items", "interactions", "movies_in_file",
                                   "movies_never_rated", "rated_movies_without_metadata", "tied_timestamps",
                                   "duplicate_user_item_ratings", "blank_lines")} == {
        "ratings_read": 6, "users": 3, "items": 3, "interactions": 6, "movies_in_file": 4, "movies_never_rated": 1,
        "rated_movies_without_metadata": 0, "tied_timestamps": 1, "duplicate_user_item_ratings": 0,
        "blank_lines": 0}


def test_ml100k_standard_genres(tmp_path: Path) -> None:
    dataset = read_movielens(ml100k(tmp_path))
    assert dataset.name == "ml-100k"
    assert dataset.user_ids == ("5", "3")
    assert dataset.catalog.raw_ids == ("1", "2")
    assert sequences(dataset) == [[1, 2], [2, 1]]
    assert dataset.catalog.titles == ("Toy Story (1995)", "GoldenEye (1995)")
    assert dataset.catalog.categories == ((("Animation",), ("Children's",), ("Comedy",)),
                                          (("Action",), ("Adventure",), ("Thriller",)))
    assert dataset.report["movies_never_rated"] == 1 and dataset.report["tied_timestamps"] == 1


def test_ml100k_genre_names_from_u_genre(tmp_path: Path) -> None:
    names = [f"G{k}" for k in range(len(ML100K_GENRES))]
    dataset = read_movielens(ml100k(tmp_path, genres=[f"{name}|{k}" for k, name in enumerate(names)] + [""]))
    assert dataset.catalog.categories[0] == (("G3",), ("G4",), ("G5",))


def test_nested_folder_and_crlf(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    ml1m(folder)
    (folder / "ratings.dat").write_bytes((folder / "ratings.dat").read_bytes().replace(b"\n", b"\r\n"))
    assert find_movielens(tmp_path) == ("ml-1m", folder)
    assert sequences(read_movielens(tmp_path)) == [[1, 2, 3], [2, 1], [2]]


def test_rated_movie_missing_from_movies_file(tmp_path: Path) -> None:
    dataset = read_movielens(ml1m(tmp_path, movies=MOVIES_1M[1:]))
    assert dataset.catalog.titles == ("Mis\xe9rables, Les (1995)", None, "Heat (1995)")
    assert dataset.report["rated_movies_without_metadata"] == 1


@pytest.mark.parametrize(("line", "problem"), [
    ("1::10::5", "expected 4 fields separated by '::'"),
    ("1::10::5::100::7", "expected 4 fields"),
    ("1::10::5::abc", "timestamp must be a non-negative integer, got 'abc'"),
    ("1::10::5::1.5", "timestamp must be a non-negative integer"),
    ("x::10::5::100", "user id must be a non-negative integer"),
    ("1::-10::5::100", "movie id must be a non-negative integer"),
    ("1::10::five::100", "rating must be a number, got 'five'"),
    ("1::10::5::\xb2", "timestamp must be a non-negative integer"),
])
def test_bad_ratings_line(tmp_path: Path, line: str, problem: str) -> None:
    ratings = RATINGS_1M[:2] + [""] + [line] + RATINGS_1M[2:]
    folder = ml1m(tmp_path, ratings=ratings)
    with pytest.raises(DataError) as error:
        read_movielens(folder)
    message = str(error.value)
    assert str(folder / "ratings.dat") in message and "line 4:" in message and problem in message


def test_bad_100k_ratings_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"u.data: line 2: expected 4 fields separated by '\\t'"):
        read_movielens(ml100k(tmp_path, ratings=[RATINGS_100K[0], "3 2 4 881250940"]))


@pytest.mark.parametrize(("movies", "problem"), [
    (MOVIES_1M[:1] + ["20::Heat (1995)"], r"movies.dat: line 2: expected 3 fields"),
    (MOVIES_1M[:1] + ["abc::Heat (1995)::Drama"], r"movies.dat: line 2: movie id must be a non-negative integer"),
    (MOVIES_1M[:2] + ["10::Again (1995)::Drama"], r"movies.dat: line 3: movie id 10 is listed twice"),
])
def test_bad_movies_1m(tmp_path: Path, movies: list[str], problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        read_movielens(ml1m(tmp_path, movies=movies))


@pytest.mark.parametrize(("movies", "problem"), [
    (MOVIES_100K[:1] + ["2|GoldenEye (1995)|01-Jan-1995||http://x|0|1"], r"u.item: line 2: expected 24"),
    (MOVIES_100K[:1] + [MOVIES_100K[1].replace("|0|1|1|", "|0|2|1|")], r"u.item: line 2: genre flags must be 0 or 1"),
])
def test_bad_movies_100k(tmp_path: Path, movies: list[str], problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        read_movielens(ml100k(tmp_path, movies=movies))


def test_bad_genre_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"u.genre: line 2: expected 'genre name\|index'"):
        read_movielens(ml100k(tmp_path, genres=["unknown|0", "Action"]))


def test_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ratings.dat: empty file"):
        read_movielens(ml1m(tmp_path / "a", ratings=["", "  "]))
    with pytest.raises(DataError, match=r"movies.dat: empty file"):
        read_movielens(ml1m(tmp_path / "b", movies=[]))


def test_missing_or_ambiguous_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        read_movielens(tmp_path / "absent")
    with pytest.raises(DataError, match="no MovieLens files"):
        read_movielens(tmp_path)
    write_lines(tmp_path / "ratings.dat", RATINGS_1M)
    with pytest.raises(DataError, match="movies.dat is missing"):
        read_movielens(tmp_path)
    ml100k(tmp_path)
    with pytest.raises(DataError, match="both ml-1m and ml-100k"):
        read_movielens(tmp_path)
