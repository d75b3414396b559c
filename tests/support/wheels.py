"""Tiny real wheels, and the two ways pip and uv find them offline.

Wheels are written with `zipfile` the way a build backend writes them (`METADATA`, `WHEEL`,
`RECORD` with sha256 digests), so uv and pip install them like any wheel from PyPI. Each one
holds a module (or the files you give) and takes a few milliseconds to write.

    from support.wheels import Wheel, find_links, simple_index

    wheels = [Wheel("alpha", "1.0", requires=["beta>=2"]), Wheel("beta", "2.0")]
    links = find_links(tmp_path / "links", wheels)        # a --find-links folder
    index = simple_index(tmp_path / "index", wheels)      # a PEP 503 index; index.url is file://

Either way, run uv with `--offline` (or `UV_OFFLINE=1`) and `--no-config` so nothing reaches
a real index.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

# A fixed timestamp keeps the bytes (and so the sha256) of a wheel the same on every run.
_EPOCH = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Wheel:
    """One distribution's wheel: name, version, `Requires-Dist` lines and its files.

    `files` maps a path inside the wheel to its text; by default the wheel holds one module,
    `<import name>/__init__.py`, that records its version in `__version__`.
    """

    name: str
    version: str
    requires: Sequence[str] = ()
    files: Mapping[str, str] | None = None
    build_tag: str | None = None
    tag: str = "py3-none-any"
    requires_python: str | None = None
    extra_metadata: Sequence[str] = field(default=())

    @property
    def dist_name(self) -> str:
        """The name as it is spelled in file names (PEP 427: `-` becomes `_`)."""
        return re.sub(r"[-_.]+", "_", self.name)

    @property
    def filename(self) -> str:
        parts = [self.dist_name, self.version]
        if self.build_tag:
            parts.append(self.build_tag)
        return "-".join([*parts, self.tag]) + ".whl"

    def contents(self) -> dict[str, str]:
        if self.files is not None:
            return dict(self.files)
        package = self.dist_name.lower()
        return {f"{package}/__init__.py": f'__version__ = "{self.version}"\n'}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _record_digest(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def build_wheel(wheel: Wheel, dest: Path) -> Path:
    """Write `wheel` into the folder `dest` and return its path (same bytes every time)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dist_info = f"{wheel.dist_name}-{wheel.version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {wheel.name}", f"Version: {wheel.version}"]
    if wheel.requires_python:
        metadata.append(f"Requires-Python: {wheel.requires_python}")
    metadata += [f"Requires-Dist: {line}" for line in wheel.requires]
    metadata += list(wheel.extra_metadata)
    wheel_info = ["Wheel-Version: 1.0", "Generator: support.wheels", "Root-Is-Purelib: true"]
    if wheel.build_tag:
        wheel_info.append(f"Build: {wheel.build_tag}")
    wheel_info.append(f"Tag: {wheel.tag}")
    entries: list[tuple[str, bytes]] = [
        (name, text.encode()) for name, text in sorted(wheel.contents().items())
    ]
    entries.append((f"{dist_info}/METADATA", ("\n".join(metadata) + "\n").encode()))
    entries.append((f"{dist_info}/WHEEL", ("\n".join(wheel_info) + "\n").encode()))
    record = [f"{name},{_record_digest(data)},{len(data)}" for name, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    path = dest / wheel.filename
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def find_links(folder: Path, wheels: Iterable[Wheel]) -> Path:
    """A flat folder of wheels, for `--find-links FOLDER --no-index`."""
    folder = Path(folder)
    for wheel in wheels:
        build_wheel(wheel, folder)
    return folder


@dataclass(frozen=True)
class SimpleIndex:
    """A PEP 503 index on disk: `root/simple/<project>/index.html` linking `root/files/`."""

    root: Path

    @property
    def simple(self) -> Path:
        return self.root / "simple"

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def url(self) -> str:
        """The `--index-url` for uv and pip (a file:// URL; both read it offline)."""
        return self.simple.resolve().as_uri()

    def wheel_path(self, filename: str) -> Path:
        return self.files / filename


def simple_index(root: Path, wheels: Iterable[Wheel]) -> SimpleIndex:
    """Write (or extend) a PEP 503 index of `wheels` under `root`; links carry `#sha256=`."""
    index = SimpleIndex(Path(root))
    for wheel in wheels:
        build_wheel(wheel, index.files)
    by_project: dict[str, list[Path]] = {}
    for path in sorted(index.files.glob("*.whl")):
        project = canonicalize_name(path.name.split("-", 1)[0])
        by_project.setdefault(project, []).append(path)
    index.simple.mkdir(parents=True, exist_ok=True)
    projects = []
    for project, paths in sorted(by_project.items()):
        page = index.simple / project
        page.mkdir(exist_ok=True)
        links = "\n".join(
            f'<a href="../../files/{html.escape(p.name)}#sha256={sha256_of(p)}">'
            f"{html.escape(p.name)}</a><br/>"
            for p in paths
        )
        (page / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body>\n{links}\n</body></html>\n", encoding="utf-8"
        )
        projects.append(f'<a href="{project}/">{project}</a><br/>')
    (index.simple / "index.html").write_text(
        "<!DOCTYPE html>\n<html><body>\n" + "\n".join(projects) + "\n</body></html>\n",
        encoding="utf-8",
    )
    return index


def fake_torch(
    version: str = "2.10.0",
    *,
    cuda: str | None = "12.8",
    arch_flags: str = "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120",
    requires: Sequence[str] = (),
) -> Wheel:
    """A `torch` wheel that answers the questions `bake python verify` asks, like a CUDA build
    on a machine without a GPU: `torch.version.cuda`, `torch._C._cuda_getArchFlags()` and
    `torch.cuda.get_arch_list()`, with `torch.cuda.is_available()` False. `cuda=None` is a
    CPU-only build."""
    return Wheel(
        "torch",
        version,
        requires=requires,
        files={
            "torch/__init__.py": (
                f'__version__ = "{version}"\nfrom torch import _C, cuda, version\n'
            ),
            "torch/version.py": f'__version__ = "{version}"\ncuda = {cuda!r}\n',
            "torch/_C.py": (
                f"def _cuda_getArchFlags():\n    return {arch_flags if cuda else None!r}\n"
            ),
            "torch/cuda.py": (
                "from torch import _C\n\n"
                "def is_available():\n    return False\n\n"
                "def get_arch_list():\n"
                "    flags = _C._cuda_getArchFlags()\n"
                "    return flags.split() if flags else []\n"
            ),
        },
    )
