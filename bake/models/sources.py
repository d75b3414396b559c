"""One way to download any model entry: the source kind picks its module (hf, s3, url).

Source modules are imported on first use, so verifying models never imports boto3 or the Hub
client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bake.errors import BakeError
from bake.locks.models import HfSource, ModelEntry, ModelsLock, S3Source, UrlSource
from bake.models.store import Sink
from bake.redact import redact_url


def select(lock: ModelsLock, names: Sequence[str] = (), placement: str = "all") -> list[ModelEntry]:
    """The entries `names` pick (every entry when none), of `placement`, each once, in the
    order named. Every unknown name is reported at once, before anything is done. (The one
    selection of `models fetch` and `update-locks --models`.)"""
    if not names:
        return list(lock.entries(placement))
    unknown = [name for name in dict.fromkeys(names) if name not in lock.models]
    if unknown:
        known = ", ".join(sorted(lock.models))
        raise BakeError(
            f"no model named {', '.join(map(repr, unknown))} in the models lock (known: {known})"
        )
    return [
        lock.models[name]
        for name in dict.fromkeys(names)
        if placement in ("all", lock.models[name].placement)
    ]


def origin(entry: ModelEntry, revision: str | None = None) -> str:
    """Where the entry's bytes come from, safe to print (no credentials, no query strings)."""
    source = entry.source
    if isinstance(source, HfSource):
        return f"hf://{source.repo}/{source.path}@{revision or source.revision}"
    if isinstance(source, S3Source):
        from bake.models import s3 as source_s3

        try:
            bucket, key = source_s3.location(source)
        except BakeError:
            return source.describe()
        return f"s3://{bucket}/{key}"
    return redact_url(source.url)


def downloader(entry: ModelEntry, revision: str | None = None) -> Callable[[Sink], None]:
    """A function writing the entry's bytes into a Sink (from its offset on). `revision` is
    the Hub commit for hf sources (default: the locked one)."""
    source = entry.source
    if isinstance(source, HfSource):
        from bake.models import hf as source_hf

        commit = revision or (entry.locked.revision if entry.locked else None) or source.revision
        return lambda sink: source_hf.download(source, commit, sink)
    if isinstance(source, S3Source):
        from bake.models import s3 as source_s3

        return lambda sink: source_s3.download(source, sink)
    assert isinstance(source, UrlSource)
    from bake.models import url as source_url

    return lambda sink: source_url.download(source, sink)
