"""Downloads against a local http.server on 127.0.0.1 (never the internet): files, skip/overwrite, errors, unzip."""

from __future__ import annotations

import functools
import gzip
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jaxrec.data.download import (AMAZON2014_BASE_URL, MOVIELENS_BASE_URL, DownloadError, amazon2014_category,
                                  download_amazon2014, download_movielens, official_urls)
from jaxrec.data.movielens import read_movielens


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, served folder, request paths) of a server on an ephemeral port, shut down afterwards."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/data", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_official_urls() -> None:
    assert official_urls("amazon2014", "Beauty") == [
        "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Beauty_5.json.gz",
        "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_Beauty.json.gz"]
    assert official_urls("amazon2014", "sports and outdoors")[0].endswith("/reviews_Sports_and_Outdoors_5.json.gz")
    assert official_urls("movielens", "ml-1m") == ["https://files.grouplens.org/datasets/movielens/ml-1m.zip"]
    assert official_urls("movielens", "ml-100k", "http://mirror/x") == ["http://mirror/x/ml-100k.zip"]
    assert AMAZON2014_BASE_URL.startswith("http://snap.stanford.edu/") and MOVIELENS_BASE_URL.endswith("/movielens/")
    assert amazon2014_category("toys_and_games") == "Toys_and_Games"
    with pytest.raises(DownloadError, match="unknown Amazon 2014 category 'Beuty'"):
        official_urls("amazon2014", "Beuty")
    with pytest.raises(DownloadError, match="unknown MovieLens variant"):
        official_urls("movielens", "ml-20m")


def test_download_amazon(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, root, requests = server
    (root / "data").mkdir()
    reviews = gzip.compress(b'{"reviewerID": "A", "asin": "B", "overall": 5.0, "unixReviewTime": 1}\n' * 1000)
    meta = gzip.compress(b"{'asin': 'B', 'title': 'x'}\n")
    (root / "data" / "reviews_Beauty_5.json.gz").write_bytes(reviews)
    (root / "data" / "meta_Beauty.json.gz").write_bytes(meta)
    out = tmp_path / "out"
    paths = download_amazon2014("beauty", out, base_url=base)
    assert paths == [out / "reviews_Beauty_5.json.gz", out / "meta_Beauty.json.gz"]
    assert paths[0].read_bytes() == reviews and paths[1].read_bytes() == meta
    assert not list(out.glob("*.part"))
    assert f"downloading {base}/reviews_Beauty_5.json.gz" in capsys.readouterr().err
    assert requests == ["/data/reviews_Beauty_5.json.gz", "/data/meta_Beauty.json.gz"]
    download_amazon2014("Beauty", out, base_url=base)  # already there: nothing fetched
    assert len(requests) == 2
    download_amazon2014("Beauty", out, base_url=base, overwrite=True)
    assert len(requests) == 4


def test_http_error_names_the_url(server, tmp_path: Path) -> None:
    base, _, _ = server
    with pytest.raises(DownloadError, match=rf"{base}/reviews_Beauty_5.json.gz: HTTP 404"):
        download_amazon2014("Beauty", tmp_path / "out", base_url=base)
    assert not list((tmp_path / "out").iterdir())  # no .part left behind


def test_not_a_gzip_file(server, tmp_path: Path) -> None:
    base, root, _ = server
    (root / "data").mkdir()
    (root / "data" / "reviews_Beauty_5.json.gz").write_text("<html>moved</html>")
    with pytest.raises(DownloadError, match="did not send a .gz file"):
        download_amazon2014("Beauty", tmp_path / "out", base_url=base)
    assert not list((tmp_path / "out").iterdir())


def test_unreachable_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with pytest.raises(DownloadError, match=r"http://127.0.0.1:9/ml-1m.zip: download failed"):
        download_movielens("ml-1m", tmp_path, base_url="http://127.0.0.1:9/")


def test_download_movielens_unzips(server, tmp_path: Path) -> None:
    base, root, requests = server
    (root / "data").mkdir()
    with zipfile.ZipFile(root / "data" / "ml-100k.zip", "w") as archive:
        archive.writestr("ml-100k/u.data", "1\t1\t5\t10\n1\t2\t4\t5\n")
        archive.writestr("ml-100k/u.item", "1|A (1990)|||u|" + "|".join("0" * 19) + "\n"
                                           "2|B (1991)|||u|" + "|".join("1" + "0" * 18) + "\n")
        archive.writestr("ml-100k/README", "readme")
    folder = download_movielens("ml-100k", tmp_path / "out", base_url=base)
    assert folder == tmp_path / "out" / "ml-100k"
    dataset = read_movielens(folder)
    assert dataset.catalog.raw_ids == ("2", "1") and dataset.catalog.titles == ("B (1991)", "A (1990)")
    assert download_movielens("ml-100k", tmp_path / "out", base_url=base) == folder
    assert requests == ["/data/ml-100k.zip"]


def test_zip_slip_is_refused(server, tmp_path: Path) -> None:
    base, root, _ = server
    (root / "data").mkdir()
    with zipfile.ZipFile(root / "data" / "ml-1m.zip", "w") as archive:
        archive.writestr("../evil.txt", "x")
    with pytest.raises(DownloadError, match="escapes"):
        download_movielens("ml-1m", tmp_path / "out", base_url=base)
    assert not (tmp_path / "evil.txt").exists()
