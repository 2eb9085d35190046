"""Download the raw public datasets: Amazon Review Data 2014 (one category) and MovieLens 1M / 100K.

The official locations are kept in one place, `official_urls`. Files are streamed to `<name>.part` and renamed when
complete, so an interrupted download never leaves a file that looks finished. Only the standard library is used.
The data are third-party and research-only: cite He & McAuley (WWW 2016) / McAuley et al. (SIGIR 2015) for Amazon,
Harper & Konstan (TiiS 2015) for MovieLens, and keep the files out of anything published.
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

AMAZON2014_BASE_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
MOVIELENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"

# The 24 categories of the 2014 release with a 5-core reviews file, spelled as in the file names.
AMAZON2014_CATEGORIES = (
    "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics",
    "Grocery_and_Gourmet_Food", "Health_and_Personal_Care", "Home_and_Kitchen", "Kindle_Store", "Movies_and_TV",
    "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Sports_and_Outdoors",
    "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)
MOVIELENS_VARIANTS = ("ml-1m", "ml-100k")
_CHUNK = 1 << 20
_MAGIC = {".gz": b"\x1f\x8b", ".zip": b"PK"}


class DownloadError(RuntimeError):
    """A download failed; the message names the URL and what went wrong."""


def amazon2014_category(name: str) -> str:
    """The file-name spelling of an Amazon 2014 category ("sports and outdoors" -> "Sports_and_Outdoors")."""
    key = name.replace(",", "").replace(" ", "_").lower()
    for category in AMAZON2014_CATEGORIES:
        if category.lower() == key:
            return category
    raise DownloadError(f"unknown Amazon 2014 category {name!r}; expected one of {', '.join(AMAZON2014_CATEGORIES)}")


def official_urls(dataset: str, name: str, base_url: str | None = None) -> list[str]:
    """The URLs of one dataset: `official_urls("amazon2014", "Beauty")` -> [reviews_Beauty_5.json.gz URL,
    meta_Beauty.json.gz URL]; `official_urls("movielens", "ml-1m")` -> [ml-1m.zip URL]."""
    if dataset == "amazon2014":
        category = amazon2014_category(name)
        base = _base(base_url or AMAZON2014_BASE_URL)
        return [f"{base}reviews_{category}_5.json.gz", f"{base}meta_{category}.json.gz"]
    if dataset == "movielens":
        if name not in MOVIELENS_VARIANTS:
            raise DownloadError(f"unknown MovieLens variant {name!r}; expected one of {', '.join(MOVIELENS_VARIANTS)}")
        return [f"{_base(base_url or MOVIELENS_BASE_URL)}{name}.zip"]
    raise DownloadError(f"unknown dataset {dataset!r}; expected 'amazon2014' or 'movielens'")


def download_amazon2014(category: str, out_dir: str | Path, base_url: str = AMAZON2014_BASE_URL,
                        overwrite: bool = False) -> list[Path]:
    """Download `reviews_<Category>_5.json.gz` and `meta_<Category>.json.gz` into `out_dir`; returns their paths.

    Existing files are kept unless `overwrite`. Read the folder with `jaxrec.data.amazon.read_amazon2014(out_dir)`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [_download(url, out / url.rsplit("/", 1)[1], overwrite)
            for url in official_urls("amazon2014", category, base_url)]


def download_movielens(variant: str, out_dir: str | Path, base_url: str = MOVIELENS_BASE_URL,
                       overwrite: bool = False) -> Path:
    """Download and unzip `<variant>.zip` ("ml-1m" or "ml-100k") into `out_dir`; returns `out_dir/<variant>`.

    An existing `out_dir/<variant>` folder is kept unless `overwrite`. Read it with
    `jaxrec.data.movielens.read_movielens(out_dir / variant)`.
    """
    (url,) = official_urls("movielens", variant, base_url)
    out = Path(out_dir)
    folder = out / variant
    if folder.is_dir() and not overwrite:
        return folder
    out.mkdir(parents=True, exist_ok=True)
    archive = _download(url, out / f"{variant}.zip", overwrite)
    _unzip(archive, out, url)
    if not folder.is_dir():
        raise DownloadError(f"{url}: the archive did not contain a {variant}/ folder")
    return folder


def _base(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _download(url: str, dest: Path, overwrite: bool) -> Path:
    """Stream `url` to `dest.part`, check it, then rename it to `dest`. Prints one progress line (stderr)."""
    if dest.exists() and not overwrite:
        print(f"{dest} exists, not downloading {url}", file=sys.stderr)
        return dest
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, last = 0, 0.0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - last > 0.5:
                    last = time.monotonic()
                    _progress(url, done, total, end="\r")
            _progress(url, done, total, end="\n")
        if total and done != total:
            raise DownloadError(f"{url}: connection closed after {done} of {total} bytes")
        magic = _MAGIC.get(dest.suffix)
        if magic is not None and not part.read_bytes()[: len(magic)] == magic:
            raise DownloadError(f"{url}: the server did not send a {dest.suffix} file (an error page?)")
    except urllib.error.HTTPError as error:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        part.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: download failed ({reason})") from error
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)
    return dest


def _progress(url: str, done: int, total: int, end: str) -> None:
    size = f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB" if total else f"{done / 2**20:.1f} MiB"
    print(f"downloading {url}: {size}", end=end, file=sys.stderr, flush=True)


def _unzip(archive: Path, out: Path, url: str) -> None:
    """Extract `archive` into `out`, refusing members that would land outside it."""
    root = out.resolve()
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.infolist():
                target = (root / member.filename).resolve()
                if root != target and root not in target.parents:
                    raise DownloadError(f"{url}: archive member {member.filename!r} escapes {out}")
            for member in zipped.infolist():
                target = root / member.filename
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{url}: not a valid zip archive ({error})") from error
