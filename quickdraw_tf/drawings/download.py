"""Fetches category files from the public QuickDraw bucket into a cache directory.

Downloads are resumable (an interrupted file continues with an HTTP Range
request) and atomic (bytes go to ``<name>.part``, renamed only when complete),
so a cached file under its final name is always whole.
"""

import http.client
import os
import urllib.error
import urllib.parse
import urllib.request

from quickdraw_tf import cli

BASE_URL = "https://storage.googleapis.com/quickdraw_dataset"
# kind -> (path in the bucket, file suffix)
KINDS = {
    "simplified": ("full/simplified", ".ndjson"),
    "raw": ("full/raw", ".ndjson"),
    "numpy_bitmap": ("full/numpy_bitmap", ".npy"),
    "sketchrnn": ("sketchrnn", ".npz"),
}
DEFAULT_CACHE_DIR = os.environ.get("QUICKDRAW_CACHE",
                                   os.path.join(os.path.expanduser("~"), ".cache", "quickdraw_tf"))
_BLOCK = 1 << 20


class DownloadError(cli.Error, RuntimeError):
  """A file that could not be fetched; the message names word, kind and URL."""


def _kind(kind):
  cli.check_choice(kind, KINDS, "download kind")
  return KINDS[kind]


def url_for(word, kind="simplified", base_url=BASE_URL):
  """The bucket URL of one category file (spaces and other characters quoted)."""
  folder, suffix = _kind(kind)
  return f"{base_url.rstrip('/')}/{folder}/{urllib.parse.quote(word + suffix)}"


def path_for(word, kind="simplified", cache_dir=DEFAULT_CACHE_DIR):
  """Where the file of ``word`` is cached: ``<cache_dir>/<kind>/<word><suffix>``."""
  _, suffix = _kind(kind)
  return os.path.join(cache_dir, kind, word + suffix)


def _total_size(response, offset):
  """Full file size from Content-Range or Content-Length, or None when unknown."""
  content_range = response.headers.get("Content-Range", "")
  if "/" in content_range and content_range.rsplit("/", 1)[1].strip().isdigit():
    return int(content_range.rsplit("/", 1)[1])
  length = response.headers.get("Content-Length")
  return offset + int(length) if length and length.isdigit() else None


def _fetch_one(word, kind, url, final, retries, timeout, progress):
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  part = final + ".part"
  for attempt in range(retries + 1):
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
      with urllib.request.urlopen(request, timeout=timeout) as response:
        if offset and response.status != 206:  # The server ignored Range: start over.
          offset = 0
        total = _total_size(response, offset)
        with open(part, "ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=f"{kind}/{word}",
            disable=not progress, leave=False) as bar:
          while True:
            block = response.read(_BLOCK)
            if not block:
              break
            out.write(block)
            bar.update(len(block))
      size = os.path.getsize(part)
      if total is not None and size != total:
        raise http.client.IncompleteRead(b"", total - size)
      os.replace(part, final)
      return final
    except urllib.error.HTTPError as e:
      if e.code == 416 and offset and os.path.exists(part):
        # Nothing left to send past our bytes: the part is the whole file.
        os.replace(part, final)
        return final
      if e.code == 404:
        raise DownloadError(f"no {kind} file for category {word!r} at {url} (HTTP 404): is the word a QuickDraw "
                            "category, spelled as in categories.txt?") from None
      if attempt == retries or e.code < 500:
        raise DownloadError(f"could not fetch {kind} {word!r} from {url}: HTTP {e.code} {e.reason}") from None
    except (http.client.HTTPException, urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
      if attempt == retries:
        have = os.path.getsize(part) if os.path.exists(part) else 0
        raise DownloadError(f"could not fetch {kind} {word!r} from {url} after {retries + 1} attempt(s): {e}; "
                            f"{have} bytes kept in {part}, the next run resumes from there") from None
  raise AssertionError("unreachable")


def fetch(words, kind="simplified", cache_dir=DEFAULT_CACHE_DIR, base_url=BASE_URL, retries=3, timeout=60,
          progress=True):
  """Downloads category files, skipping those already cached whole.

  Args:
    words: category names, e.g. ``["cat", "alarm clock"]``.
    kind: "simplified", "raw", "numpy_bitmap" or "sketchrnn".
    cache_dir: cache root; files land in ``<cache_dir>/<kind>/``.
    base_url: the bucket (tests point it at a local server).
    retries: extra attempts after a dropped connection or a server error;
      each resumes from the bytes already on disk.
    timeout: seconds without data before an attempt fails.
    progress: show a byte progress bar per file.

  Returns:
    list of local paths, in the order of ``words``.

  Raises:
    DownloadError: a file could not be fetched (its message names word, kind
      and URL); what was fetched so far stays in ``<name>.part``.
  """
  _kind(kind)
  os.makedirs(os.path.join(cache_dir, kind), exist_ok=True)
  paths = []
  for word in words:
    final = path_for(word, kind, cache_dir)
    if not os.path.exists(final):
      _fetch_one(word, kind, url_for(word, kind, base_url), final, retries, timeout, progress)
    paths.append(final)
  return paths
