"""Fetching from each kind of source, against real servers on loopback, with every failure a
user can meet: a clear line (which entry, what was expected and found, what to do) and nothing
at the destination."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.modelfiles import MB, blob, entry, make_lock, pin_of

from bake.locks.models import HfSource, S3Source, UrlSource
from bake.models.fetch import fetch_models

DATA = blob(3 * MB, 11)
REPO, PATH = "Comfy-Org/test_repackaged", "split_files/vae/test_vae.safetensors"
DEST = "models/vae/test_vae.safetensors"
SECRET = "test-secret-value"


def only_entry_files(root: Path) -> list[str]:
    """Every file under root except stamps and lock files: what a user would see."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and ".bake-stamps" not in p.parts and not p.name.endswith(".lock")
    )


def fetch_one(e, root: Path, **kw):
    return fetch_models(make_lock(e), root, [root / "volume"], **kw)


# -- Hugging Face ------------------------------------------------------------------------


def hf_entry(hub, data=DATA):
    commit = hub.add_file(REPO, PATH, data)
    return entry("test_vae", HfSource(REPO, PATH), DEST, data, revision=commit)


def test_hf_fetch_at_the_locked_commit(hub, tmp_path):
    e = hf_entry(hub)
    hub.add_file(REPO, PATH, blob(MB, 12))  # main moves on; the lock pins the old commit
    report = fetch_one(e, tmp_path)
    assert report.ok and report.fetched == [str(tmp_path / DEST)]
    assert (tmp_path / DEST).read_bytes() == DATA
    assert only_entry_files(tmp_path) == [DEST]
    again = fetch_one(e, tmp_path)
    assert again.present == [str(tmp_path / DEST)] and hub.downloads(PATH) == 1


def test_hf_connection_drop_resumes(hub, tmp_path):
    e = hf_entry(hub)
    hub.drop_after[PATH] = MB + 7
    report = fetch_one(e, tmp_path)
    assert report.ok, report.failed
    assert (tmp_path / DEST).read_bytes() == DATA
    assert hub.downloads(PATH) == 2  # the cut request and one resumed from the cut


def test_hf_resumes_the_partial_file_of_an_interrupted_run(hub, tmp_path):
    from bake.models.store import temp_path

    e = hf_entry(hub)
    partial = temp_path(tmp_path / DEST, e.locked)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA[:MB])
    assert fetch_one(e, tmp_path).ok
    assert (tmp_path / DEST).read_bytes() == DATA and not partial.exists()
    assert hub.ranges == [(PATH, f"bytes={MB}-")]


def test_hf_upstream_file_swapped(hub, tmp_path):
    e = hf_entry(hub)
    hub.corrupt[PATH] = blob(3 * MB, 13)
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1
    line = report.failed[0]
    assert line.startswith("test_vae: blake3")
    assert e.locked.blake3 in line and pin_of(hub.corrupt[PATH]).blake3 in line
    assert f"hf://{REPO}/{PATH}@{e.locked.revision}" in line
    assert only_entry_files(tmp_path) == []


def test_hf_missing_file_is_404(hub, tmp_path):
    e = hf_entry(hub)
    missing = entry(
        "gone",
        HfSource(REPO, "nope.safetensors"),
        "models/vae/nope.safetensors",
        DATA,
        revision=e.locked.revision,
    )
    report = fetch_one(missing, tmp_path)
    assert len(report.failed) == 1
    assert (
        report.failed[0].startswith("gone: ") and "no file 'nope.safetensors'" in report.failed[0]
    )
    assert only_entry_files(tmp_path) == []


def test_hf_private_repo_without_token_says_to_set_hf_token(hub, tmp_path):
    e = hf_entry(hub)
    hub.require_token(REPO, SECRET)
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1 and "set HF_TOKEN" in report.failed[0]
    assert only_entry_files(tmp_path) == []


def test_hf_wrong_token_is_refused_without_showing_it(hub, tmp_path, monkeypatch):
    e = hf_entry(hub)
    hub.require_token(REPO, "the-right-one")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1
    line = report.failed[0]
    assert "HF_TOKEN" in line and "refused" in line and SECRET not in line
    monkeypatch.setenv("HF_TOKEN", "the-right-one")
    assert fetch_one(e, tmp_path).ok


def test_hf_gated_repo(hub, tmp_path):
    e = hf_entry(hub)
    hub.gate(REPO)
    report = fetch_one(e, tmp_path)
    assert "gated" in report.failed[0] and "HF_TOKEN" in report.failed[0]


def test_hf_offline_mode_is_honoured(hub, tmp_path, monkeypatch):
    e = hf_entry(hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = fetch_one(e, tmp_path)
    assert "HF_HUB_OFFLINE" in report.failed[0] and hub.downloads(PATH) == 0


# -- plain URLs --------------------------------------------------------------------------


def url_entry(files, path="/rife47.pth", data=DATA, query=""):
    url = files.add(path, data) + query
    return entry("rife47", UrlSource(url), "custom_nodes/Frame/ckpts/rife/rife47.pth", data)


def test_url_fetch_and_drop_mid_file_resumes_with_range(files, tmp_path):
    e = url_entry(files)
    files.drop_after["/rife47.pth"] = MB + 1000  # the partial second chunk is read again
    report = fetch_one(e, tmp_path)
    assert report.ok, report.failed
    assert (tmp_path / e.dest).read_bytes() == DATA
    assert files.ranges == [("/rife47.pth", None), ("/rife47.pth", f"bytes={MB}-")]


def test_url_server_ignoring_range_still_gives_the_right_file(tmp_path):
    from support.httpserver import FileServer

    with FileServer(honor_range=False) as files:
        e = url_entry(files)
        files.drop_after["/rife47.pth"] = MB
        report = fetch_one(e, tmp_path)
    assert report.ok, report.failed
    assert (tmp_path / e.dest).read_bytes() == DATA


def test_url_truncated_upstream_file(files, tmp_path):
    e = url_entry(files)
    files.truncate["/rife47.pth"] = 2 * MB
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1
    assert f"sent {2 * MB} bytes, expected {3 * MB}" in report.failed[0]
    assert only_entry_files(tmp_path) == []


def test_url_connection_that_keeps_dropping_gives_up_and_keeps_the_partial(
    files, tmp_path, monkeypatch
):
    monkeypatch.setenv("BAKE_DOWNLOAD_RETRIES", "1")
    e = url_entry(files)
    files.drop_after["/rife47.pth"] = MB

    class Stubborn(dict):
        def pop(self, key, default=None):
            return 0  # every request is cut before any byte

    report = fetch_one(e, tmp_path)  # first run: cut once, resumed
    assert report.ok
    (tmp_path / e.dest).unlink()
    files.drop_after = Stubborn()
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1 and "run the fetch again to resume" in report.failed[0]
    assert not (tmp_path / e.dest).exists()


@pytest.mark.parametrize("status", [401, 403, 404])
def test_url_errors(files, tmp_path, status):
    e = url_entry(files, query="?X-Amz-Signature=" + SECRET)
    files.status["/rife47.pth"] = status
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1
    line = report.failed[0]
    assert line.startswith("rife47: ") and str(status) in line
    assert SECRET not in line  # a pre-signed URL's signature is a credential
    assert files.url("/rife47.pth") in line
    assert only_entry_files(tmp_path) == []


# -- S3 / R2 -----------------------------------------------------------------------------


def test_s3_multipart_fetch_into_the_volume(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("BAKE_S3_PART_SIZE", str(MB // 2))  # several concurrent ranged GETs
    monkeypatch.setenv("DASIWA_BUCKET", "private-models")
    s3.put("private-models", "wan/dasiwa_high.safetensors", DATA)
    e = entry(
        "dasiwa_high",
        S3Source("${DASIWA_BUCKET}", "wan/dasiwa_high.safetensors"),
        "models/diffusion_models/dasiwa_high.safetensors",
        DATA,
        placement="volume",
    )
    volume = tmp_path / "volume"
    report = fetch_models(make_lock(e), tmp_path / "comfyui", [volume])
    assert report.ok, report.failed
    assert (volume / e.dest).read_bytes() == DATA
    assert not (tmp_path / "comfyui" / e.dest).exists()


def test_s3_per_entry_credentials(s3, tmp_path, monkeypatch):
    for name, value in s3.env("R2_OTHER").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    s3.put("other-account", "m.safetensors", DATA)
    source = S3Source(
        "other-account",
        "m.safetensors",
        endpoint_url_env="R2_OTHER_ENDPOINT_URL",
        access_key_id_env="R2_OTHER_ACCESS_KEY_ID",
        secret_access_key_env="R2_OTHER_SECRET_ACCESS_KEY",
    )
    e = entry("other", source, "models/loras/m.safetensors", DATA)
    assert fetch_one(e, tmp_path).ok
    monkeypatch.delenv("R2_OTHER_SECRET_ACCESS_KEY")
    (tmp_path / e.dest).unlink()
    report = fetch_one(e, tmp_path)
    assert "R2_OTHER_ACCESS_KEY_ID" in report.failed[0]
    assert "R2_OTHER_SECRET_ACCESS_KEY" in report.failed[0]


def test_s3_missing_object(s3, tmp_path):
    s3.put("bucket-a", "present.bin", b"x")
    e = entry("gone", S3Source("bucket-a", "absent.bin"), "models/x/absent.bin", DATA)
    report = fetch_one(e, tmp_path)
    assert report.failed[0].startswith("gone: ") and "no such object" in report.failed[0]
    assert only_entry_files(tmp_path) == []


def test_s3_wrong_keys_name_the_variables_not_the_values(s3, tmp_path, monkeypatch):
    s3.put("bucket-b", "m.bin", DATA)
    e = entry("m", S3Source("bucket-b", "m.bin"), "models/x/m.bin", DATA)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTNOTREAL00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    s3.require_auth(True)
    report = fetch_one(e, tmp_path)
    line = report.failed[0]
    assert "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line
    assert SECRET not in line and "AKIATESTNOTREAL00000" not in line
    assert only_entry_files(tmp_path) == []


def test_s3_bucket_variable_unset(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("DASIWA_BUCKET", raising=False)
    e = entry("d", S3Source("${DASIWA_BUCKET}", "k"), "models/x/k", DATA)
    report = fetch_one(e, tmp_path)
    assert "DASIWA_BUCKET is not set" in report.failed[0]


@pytest.mark.parametrize("part_size", [None, MB])  # one part, or three
def test_s3_connection_that_keeps_dropping_keeps_the_partial_and_a_later_run_resumes(
    files, tmp_path, monkeypatch, part_size
):
    """moto cannot cut a connection: a plain server stands in for the bucket (HEAD and GET on
    /BUCKET/KEY are all a download asks of S3), cutting every GET after half a MB."""
    if part_size:
        monkeypatch.setenv("BAKE_S3_PART_SIZE", str(part_size))
    files.add("/cut-bucket/dasiwa.safetensors", DATA)
    monkeypatch.setenv("AWS_ENDPOINT_URL", files.base_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    e = entry(
        "dasiwa",
        S3Source("cut-bucket", "dasiwa.safetensors"),
        "models/diffusion_models/dasiwa.safetensors",
        DATA,
    )
    files.drop_every["/cut-bucket/dasiwa.safetensors"] = MB // 2
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1, report.failed
    line = report.failed[0]
    assert line.startswith("dasiwa: ") and "run the fetch again to resume" in line
    assert "s3://cut-bucket/dasiwa.safetensors" in line
    from bake.models.store import temp_path

    partial = temp_path(tmp_path / e.dest, e.locked)
    # what is kept is the start of the file, once, though every part was retried
    assert partial.read_bytes() == DATA[: MB // 2]
    assert not (tmp_path / e.dest).exists()

    del files.drop_every["/cut-bucket/dasiwa.safetensors"]
    files.ranges.clear()
    report = fetch_one(e, tmp_path)
    assert report.ok, report.failed
    assert (tmp_path / e.dest).read_bytes() == DATA and not partial.exists()
    assert ("/cut-bucket/dasiwa.safetensors", f"bytes={MB // 2}-") in files.ranges


def test_url_redirect_loop_is_a_fetch_error_naming_the_url(files, tmp_path):
    """requests' errors are OSErrors too: they must not read as a failure to write the file."""
    e = url_entry(files, path="/loop.pth", query="?X-Amz-Signature=" + SECRET)
    files.redirect["/loop.pth"] = "/loop.pth?X-Amz-Signature=" + SECRET
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1
    line = report.failed[0]
    assert line.startswith("rife47: ") and files.url("/loop.pth") in line
    assert "TooManyRedirects" in line and "cannot write" not in line
    assert SECRET not in line
    assert only_entry_files(tmp_path) == []


def test_hf_connection_that_keeps_dropping_keeps_the_partial_and_a_later_run_resumes(
    hub, tmp_path, monkeypatch
):
    import types

    from huggingface_hub import file_download

    from bake.models.store import temp_path

    # the library waits a second before each of its retries; this test has no need to
    monkeypatch.setattr(file_download, "time", types.SimpleNamespace(sleep=lambda s: None))
    # and it reads 10 MiB chunks, losing a partial one at a cut: smaller ones for a 3 MB file
    monkeypatch.setattr(file_download.constants, "DOWNLOAD_CHUNK_SIZE", MB // 4)
    e = hf_entry(hub)
    hub.drop_after[PATH] = MB  # the first GET brings one MB, every later one nothing
    hub.drop_every[PATH] = 0
    report = fetch_one(e, tmp_path)
    assert len(report.failed) == 1, report.failed
    line = report.failed[0]
    assert line.startswith("test_vae: ") and "run the fetch again to resume" in line
    assert temp_path(tmp_path / DEST, e.locked).read_bytes() == DATA[:MB]
    del hub.drop_every[PATH]
    hub.ranges.clear()
    assert fetch_one(e, tmp_path).ok
    assert (tmp_path / DEST).read_bytes() == DATA
    assert hub.ranges == [(PATH, f"bytes={MB}-")]
