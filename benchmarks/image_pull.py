#!/usr/bin/env python3
"""The image pull on a fresh host: layer size and decompress-and-extract time, gzip vs zstd.

    .venv/bin/python benchmarks/image_pull.py [--fp8-mib 128] [--te-mib 64] [--bf16-mib 32]
        [--env-dir DIR] [--env-mib 128] [--code-dir DIR] [--gzip-levels 1,6,9]
        [--zstd-levels 3,9] [--zstd-sample-levels 11,19] [--sample-mib 16] [--rounds 3]

One layer tar per kind of bytes the image holds, each compressed as BuildKit can push it (gzip,
its default, at level 6, and 1 and 9; zstd at its level 3 and 9) and left uncompressed, then
streamed through the decompressor into tar extraction (Python's tarfile) in a temporary folder,
as a container runtime unpacks a pulled layer: under /dev/shm by default (`--extract-dir`), so
that a shared disk's metadata latency, which writing to the host's disk would cost every codec
alike, does not drown the difference between codecs. Printed side by side from this one run:
the size as a ratio to the uncompressed tar, and the decompress-and-extract time as a ratio to
extracting the uncompressed tar (the same extraction, without decompression); the decompression
alone, and for gzip `unpigz -c` where installed (`apt-get install pigz`: containerd and Docker
use it for gzip layers when the host has it); and the compression speed (the build side), once.
Every codec runs on one core: containerd and Docker unpack a layer with one decompressing stream
(unpigz adds threads for reading, writing and the checksum only). About 3-4 minutes on the 2-core
development machine with the defaults and a torch environment.

The kinds:

- `fp8`: a safetensors file (JSON header, then tensors) shaped like the Wan 2.2 14B fp8_scaled
  diffusion models: per block the attention and FFN weights as float8_e4m3fn, each with its
  float32 `scale_weight`, plus float32 biases, norms and modulation. Weights are N(0, sigma)
  float32 with sigma varying per tensor (log-uniform 0.008-0.04) and per output row
  (log-normal, s=0.25), scaled per tensor so the largest magnitude maps to 448, and rounded to
  e4m3 (1 sign, 4 exponent bits with bias 7, 3 mantissa bits, nearest even, subnormals, 448
  saturates, NaN 0x7f): what an fp8 weight file holds, not uniform random bytes.
- `te`: a text-encoder-like file, the umt5-xxl fp8_scaled mix: fp8 layers (69% of the bytes)
  and a 16-bit (bf16) token embedding (31%).
- `bf16`: bf16 tensors only, like the LoRAs and the VAE.
- `env`: a Python environment: a sample of `--env-dir` (default: $IMAGE_PULL_ENV_DIR, else this
  interpreter's site-packages) at `--env-mib`: every file under 4 MiB with probability
  `env-mib / total` (by a hash of its path), and from every larger file (the CUDA libraries) a
  slice of that fraction of its length, so the mix of code, data and shared objects is the
  folder's. Point it at an environment with torch and its nvidia-* wheels, the bulk of the
  image's 8.5 GB. Symlinks are left out.
- `code`: ComfyUI and the custom nodes, from `--code-dir` (default: $COMFYUI_SRC, a folder
  holding `ComfyUI/` and `custom_nodes/`), with checked-hash `.pyc` compiled beside every `.py`
  as the image build does (`--no-pyc` leaves them out). Skipped, with a note, when not given.

A kind whose input is absent is skipped with a note. Files are generated with a fixed seed, so
runs are comparable. zstd is the C library (the `zstandard` package) and gzip is zlib; the
runtimes decode with Go (klauspost/compress for zstd, Go's compress/gzip or unpigz for gzip),
not measured here. BuildKit maps zstd levels to klauspost's four encoder settings (below 3:
fastest; 3-5: default, about zstd -3; 6-9: better, about -7; 10 and up: best, about -11), so
zstd -19 is beyond anything BuildKit writes: the levels of `--zstd-sample-levels` (slow) run on
the first `--sample-mib` of each layer only, against level 3 on the same bytes.

Last, the whole image on paper: each kind's measured ratios and rates at the image's sizes
(`--image-gb`, by default the figures of docs/image.md, "Expected size", with the Wan 2.2 fp8
pair at 2 x 14.3 GB): the bytes a fresh host pulls, and one core's decompression time.
Extraction here is Python's tarfile, whose cost per file (not the runtime's) dominates the env
and code layers: the "extract" columns compare codecs, their absolute seconds are this machine's.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import io
import json
import marshal
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import zstandard

MIB = 1 << 20
CHUNK = 1 << 20
E4M3_MAX = 448.0
# Layer sizes of the image in GB (docs/image.md, "Expected size", and the model files): the Wan
# 2.2 fp8 pair, the umt5 fp8 text encoder, the LoRAs, the VAE and RIFE, the CUDA base with the
# apt additions and the Python environment, ComfyUI with the nodes and our code.
IMAGE_GB = "fp8=28.6,te=6.7,bf16=1.5,env=14.7,code=0.3"


# -- fp8 and bf16 ----------------------------------------------------------------------------


def to_e4m3(x: np.ndarray) -> np.ndarray:
    """float32 -> float8_e4m3fn bytes: round to nearest even, subnormals, saturate at 448."""
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    sign = ((bits >> 24) & 0x80).astype(np.uint8)
    a = np.minimum(np.abs(x), np.float32(E4M3_MAX))
    abits = a.view(np.uint32)
    # Normal numbers: keep 3 of float32's 23 mantissa bits, rounding half to even; a carry into
    # the exponent is right. Then rebias the exponent from 127 to 7: (127 - 7) << 3 = 960.
    rounded = (abits + np.uint32(0x7FFFF) + ((abits >> 20) & 1)) >> 20
    normal = rounded.astype(np.int32) - 960
    # Subnormals (below 2**-6): multiples of 2**-9; rint rounds half to even. 8 is 2**-6 itself.
    sub = np.rint(a * np.float32(512.0)).astype(np.int32)
    code = np.where(a < np.float32(2.0**-6), sub, normal)
    out = np.minimum(code, 0x7E).astype(np.uint8) | sign
    out[np.isnan(x)] = 0x7F
    return out


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (as uint16), round to nearest even."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


@dataclasses.dataclass
class Tensor:
    name: str
    dtype: str  # safetensors dtype: F8_E4M3, BF16, F32
    shape: tuple[int, ...]
    kind: str  # weight (N(0, sigma) rows), scale, bias, norm, modulation

    @property
    def nbytes(self) -> int:
        size = {"F8_E4M3": 1, "BF16": 2, "F32": 4}[self.dtype]
        return int(np.prod(self.shape, dtype=np.int64)) * size


def wan_like(budget: int, dim: int = 5120, ffn: int = 13824) -> list[Tensor]:
    """Tensors of Wan 2.2 14B fp8_scaled blocks (real dimensions) up to `budget` bytes."""
    tensors: list[Tensor] = []
    total = 0
    block = 0
    while total < budget:
        p = f"blocks.{block}."
        group: list[Tensor] = [Tensor(p + "modulation", "F32", (1, 6, dim), "modulation")]
        for attn in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "o"):
                group += [
                    Tensor(f"{p}{attn}.{proj}.weight", "F8_E4M3", (dim, dim), "weight"),
                    Tensor(f"{p}{attn}.{proj}.scale_weight", "F32", (), "scale"),
                    Tensor(f"{p}{attn}.{proj}.bias", "F32", (dim,), "bias"),
                ]
            group += [
                Tensor(f"{p}{attn}.norm_q.weight", "F32", (dim,), "norm"),
                Tensor(f"{p}{attn}.norm_k.weight", "F32", (dim,), "norm"),
            ]
        for name, shape in (("ffn.0", (ffn, dim)), ("ffn.2", (dim, ffn))):
            group += [
                Tensor(f"{p}{name}.weight", "F8_E4M3", shape, "weight"),
                Tensor(f"{p}{name}.scale_weight", "F32", (), "scale"),
                Tensor(f"{p}{name}.bias", "F32", (shape[0],), "bias"),
            ]
        group += [Tensor(f"{p}norm3.weight", "F32", (dim,), "norm")]
        for tensor in group:
            if total >= budget:
                break
            tensors.append(tensor)
            total += tensor.nbytes
        block += 1
    return tensors


def umt5_like(budget: int, dim: int = 4096, ffn: int = 10240) -> list[Tensor]:
    """umt5-xxl fp8_scaled: fp8 encoder layers (69% of the bytes), a bf16 token embedding."""
    tensors: list[Tensor] = []
    total = 0
    layer = 0
    while total < budget * 0.69:
        p = f"encoder.block.{layer}.layer."
        group = [Tensor(f"{p}0.layer_norm.weight", "F32", (dim,), "norm")]
        for proj in ("q", "k", "v", "o"):
            group += [
                Tensor(f"{p}0.SelfAttention.{proj}.weight", "F8_E4M3", (dim, dim), "weight"),
                Tensor(f"{p}0.SelfAttention.{proj}.scale_weight", "F32", (), "scale"),
            ]
        group += [Tensor(f"{p}1.layer_norm.weight", "F32", (dim,), "norm")]
        for name, shape in (("wi_0", (ffn, dim)), ("wi_1", (ffn, dim)), ("wo", (dim, ffn))):
            group += [
                Tensor(f"{p}1.DenseReluDense.{name}.weight", "F8_E4M3", shape, "weight"),
                Tensor(f"{p}1.DenseReluDense.{name}.scale_weight", "F32", (), "scale"),
            ]
        for tensor in group:
            if total >= budget * 0.69:
                break
            tensors.append(tensor)
            total += tensor.nbytes
        layer += 1
    rows = max(1, round(total * 0.31 / 0.69) // (2 * dim))
    return [*tensors, Tensor("shared.weight", "BF16", (rows, dim), "weight")]


def lora_like(budget: int, dim: int = 5120, rank: int = 64) -> list[Tensor]:
    """bf16 LoRA pairs (down: rank x dim, up: dim x rank) up to `budget` bytes."""
    tensors: list[Tensor] = []
    total = 0
    n = 0
    while total < budget:
        for part, shape in (("lora_down", (rank, dim)), ("lora_up", (dim, rank))):
            tensors.append(
                Tensor(f"diffusion_model.blocks.{n}.{part}.weight", "BF16", shape, "weight")
            )
            total += tensors[-1].nbytes
        n += 1
    return tensors


def tensor_bytes(tensor: Tensor, rng: np.random.Generator) -> bytes:
    if tensor.kind == "scale":
        return struct.pack("<f", float(rng.uniform(1e-5, 1e-4)))
    if tensor.kind == "norm":
        return (1.0 + 0.1 * rng.standard_normal(tensor.shape, dtype=np.float32)).tobytes()
    if tensor.kind in ("bias", "modulation"):
        return (0.02 * rng.standard_normal(tensor.shape, dtype=np.float32)).tobytes()
    rows = tensor.shape[0]
    sigma = float(np.exp(rng.uniform(np.log(0.008), np.log(0.04))))
    row_sigma = (sigma * np.exp(0.25 * rng.standard_normal(rows))).astype(np.float32)
    x = rng.standard_normal(tensor.shape, dtype=np.float32)
    x *= row_sigma.reshape((rows,) + (1,) * (len(tensor.shape) - 1))
    if tensor.dtype == "BF16":
        return to_bf16(x).astype("<u2").tobytes()
    x *= np.float32(E4M3_MAX / float(np.abs(x).max()))
    return to_e4m3(x).tobytes()


def write_safetensors(path: Path, tensors: list[Tensor], seed: int) -> int:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for tensor in tensors:
        end = offset + tensor.nbytes
        header[tensor.name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for tensor in tensors:
            f.write(tensor_bytes(tensor, rng))
    return path.stat().st_size


# -- layer tars --------------------------------------------------------------------------------


def _info(name: str, size: int, mode: int = 0o644) -> tarfile.TarInfo:
    # As BuildKit writes a layer with rewrite-timestamp: root-owned, one fixed time.
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def model_tar(tar_path: Path, model: Path, dest: str) -> None:
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar, model.open("rb") as f:
        tar.addfile(_info(dest, model.stat().st_size), f)


def _fraction_hash(text: str) -> float:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def env_tar(tar_path: Path, root: Path, target: int, prefix: str) -> tuple[int, int]:
    """A sample of `root` at about `target` bytes (see the module doc). (files, total size)."""
    files: list[tuple[str, Path, int]] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            files.append((str(path.relative_to(root)), path, path.stat().st_size))
    total = sum(size for *_, size in files)
    fraction = min(1.0, target / max(total, 1))
    count = 0
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel, path, size in files:
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            if size <= 4 * MIB:
                if _fraction_hash(rel) >= fraction:
                    continue
                with path.open("rb") as f:
                    tar.addfile(_info(f"{prefix}/{rel}", size, mode), f)
            else:
                length = max(1, int(size * fraction))
                start = int(_fraction_hash(rel) * (size - length))
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read(length)
                tar.addfile(_info(f"{prefix}/{rel}", len(data), mode), io.BytesIO(data))
            count += 1
    return count, total


def _pyc(source: bytes, filename: str) -> bytes | None:
    """A checked-hash .pyc, as `compileall --invalidation-mode checked-hash` writes it."""
    try:
        with warnings.catch_warnings():  # invalid escapes and the like: not ours to report
            warnings.simplefilter("ignore")
            code = compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    flags = (0b11).to_bytes(4, "little")  # hash-based, check the source
    return (
        importlib.util.MAGIC_NUMBER
        + flags
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


def code_tar(tar_path: Path, src: Path, pyc: bool) -> int:
    """ComfyUI's tree at comfyui/, the nodes at comfyui/custom_nodes/. The file count."""
    tag = sys.implementation.cache_tag
    roots = [(src / "ComfyUI", "comfyui"), (src / "custom_nodes", "comfyui/custom_nodes")]
    count = 0
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for root, prefix in roots:
            for folder, dirs, names in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d not in (".git", "__pycache__"))
                for name in sorted(names):
                    path = Path(folder) / name
                    if path.is_symlink() or not path.is_file():
                        continue
                    rel = f"{prefix}/{path.relative_to(root)}"
                    data = path.read_bytes()
                    tar.addfile(_info(rel, len(data)), io.BytesIO(data))
                    count += 1
                    if pyc and name.endswith(".py") and (compiled := _pyc(data, rel)):
                        cached = f"{prefix}/{path.parent.relative_to(root)}/__pycache__"
                        cached = cached.replace("/./", "/") + f"/{name[:-3]}.{tag}.pyc"
                        tar.addfile(_info(cached, len(compiled)), io.BytesIO(compiled))
                        count += 1
    return count


# -- codecs --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Codec:
    name: str
    family: str  # tar, gzip, zstd
    level: int = 0

    def compress(self, src: Path, dst: Path, limit: int | None = None) -> None:
        with src.open("rb") as fin, dst.open("wb") as fout:
            left = limit
            if self.family == "gzip":
                z = zlib.compressobj(self.level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                while chunk := fin.read(CHUNK if left is None else min(CHUNK, left)):
                    fout.write(z.compress(chunk))
                    left = None if left is None else left - len(chunk)
                fout.write(z.flush())
            elif self.family == "zstd":
                writer = zstandard.ZstdCompressor(level=self.level, threads=0)
                with writer.stream_writer(fout, closefd=False) as w:
                    while chunk := fin.read(CHUNK if left is None else min(CHUNK, left)):
                        w.write(chunk)
                        left = None if left is None else left - len(chunk)
            else:
                shutil.copyfileobj(fin, fout, CHUNK)

    def decompressor(self) -> Callable[[bytes], bytes] | None:
        if self.family == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
        if self.family == "zstd":
            return zstandard.ZstdDecompressor().decompressobj().decompress
        return None


class Stream(io.RawIOBase):
    """The layer blob read in 1 MiB pieces through its decompressor (none for a plain tar),
    served in the small reads tar extraction makes."""

    def __init__(self, path: Path, codec: Codec):
        self.file = path.open("rb", buffering=0)
        self.decompress = codec.decompressor()
        self.buffer = b""
        self.pos = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = 1 << 62
        while len(self.buffer) - self.pos < n:
            chunk = self.file.read(CHUNK)
            if not chunk:
                break
            if self.decompress is not None:
                chunk = self.decompress(chunk)
            self.buffer, self.pos = self.buffer[self.pos :] + chunk, 0
        out = self.buffer[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def close(self) -> None:
        self.file.close()
        super().close()


def extract(blob: Path, codec: Codec, dest: Path) -> float:
    """Seconds to stream `blob` through its decompressor into tar extraction under `dest`."""
    start = time.perf_counter()
    stream = Stream(blob, codec)
    with tarfile.open(fileobj=stream, mode="r|", copybufsize=CHUNK) as tar:
        tar.extractall(dest, filter="tar")
    stream.close()
    elapsed = time.perf_counter() - start
    shutil.rmtree(dest)
    return elapsed


def decompress_only(blob: Path, codec: Codec, limit: int | None = None) -> tuple[float, int]:
    """Seconds to decompress `blob` (its first `limit` compressed bytes) to nothing; bytes out."""
    decompress = codec.decompressor()
    assert decompress is not None
    start = time.perf_counter()
    out = 0
    with blob.open("rb", buffering=0) as f:
        left = limit
        while chunk := f.read(CHUNK if left is None else min(CHUNK, left)):
            out += len(decompress(chunk))
            left = None if left is None else left - len(chunk)
    return time.perf_counter() - start, out


# -- the run -------------------------------------------------------------------------------------


def default_extract_dir() -> Path | None:
    """/dev/shm: extraction into memory, so the disk's metadata latency on a shared machine
    (milliseconds per mkdir, varying from run to run) does not drown what the codecs differ by;
    writing to the host's disk costs every codec the same."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def parse_levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def rotate(items: list, by: int) -> Iterator:
    by %= max(len(items), 1)
    yield from items[by:] + items[:by]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp8-mib", type=int, default=128, help="fp8 diffusion-model layer")
    parser.add_argument("--te-mib", type=int, default=64, help="text-encoder layer (fp8 + bf16)")
    parser.add_argument("--bf16-mib", type=int, default=32, help="bf16 layer (LoRAs, VAE)")
    parser.add_argument(
        "--env-dir",
        type=Path,
        default=os.environ.get("IMAGE_PULL_ENV_DIR") or sysconfig.get_paths()["purelib"],
        help="a Python environment's site-packages ($IMAGE_PULL_ENV_DIR, else this one's)",
    )
    parser.add_argument("--env-mib", type=int, default=128, help="size of the env sample")
    parser.add_argument(
        "--code-dir",
        type=Path,
        default=os.environ.get("COMFYUI_SRC") or None,
        help="a folder holding ComfyUI/ and custom_nodes/ ($COMFYUI_SRC)",
    )
    parser.add_argument("--no-pyc", action="store_true", help="no .pyc in the code layer")
    parser.add_argument("--gzip-levels", default="1,6,9")
    parser.add_argument("--zstd-levels", default="3,9")
    parser.add_argument("--zstd-sample-levels", default="11,19", help="on a sample only")
    parser.add_argument("--sample-mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="extractions per codec; best kept")
    parser.add_argument("--image-gb", default=IMAGE_GB, help="kind=GB,... for the paper pull")
    parser.add_argument("--gbit", default="1,5", help="host bandwidths for the paper pull")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument(
        "--extract-dir",
        type=Path,
        default=os.environ.get("IMAGE_PULL_EXTRACT_DIR") or default_extract_dir(),
        help="where layers are extracted ($IMAGE_PULL_EXTRACT_DIR, else /dev/shm, else --work)",
    )
    args = parser.parse_args()

    codecs = [Codec("tar", "tar")]
    codecs += [Codec(f"gzip-{n}", "gzip", n) for n in parse_levels(args.gzip_levels)]
    codecs += [Codec(f"zstd-{n}", "zstd", n) for n in parse_levels(args.zstd_levels)]
    sample_levels = parse_levels(args.zstd_sample_levels)

    work = Path(tempfile.mkdtemp(prefix="image-pull-", dir=args.work))
    try:
        return run(args, work, codecs, sample_levels)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_layers(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    layers: dict[str, Path] = {}
    models = work / "models"
    start = time.perf_counter()
    for kind, mib, make, dest in (
        ("fp8", args.fp8_mib, wan_like, "diffusion_models/wan_like_fp8_scaled.safetensors"),
        ("te", args.te_mib, umt5_like, "text_encoders/umt5_like_fp8_scaled.safetensors"),
        ("bf16", args.bf16_mib, lora_like, "loras/lora_like_bf16.safetensors"),
    ):
        if mib <= 0:
            print(f"{kind}: skipped (size 0)")
            continue
        path = models / dest
        write_safetensors(path, make(mib * MIB), args.seed + len(layers))
        layers[kind] = work / f"{kind}.tar"
        model_tar(layers[kind], path, f"comfyui/models/{dest}")
        path.unlink()
    print(f"generated the model files in {time.perf_counter() - start:.1f} s")
    env = args.env_dir
    if args.env_mib > 0 and env and Path(env).is_dir():
        layers["env"] = work / "env.tar"
        count, total = env_tar(layers["env"], Path(env), args.env_mib * MIB, "opt/venv/site")
        print(f"env: {count} files sampled from {total / 1e9:.2f} GB of {Path(env).name}/")
    else:
        print(f"env: skipped (no folder {env}; pass --env-dir or set IMAGE_PULL_ENV_DIR)")
    code = args.code_dir
    if code and (Path(code) / "ComfyUI").is_dir():
        layers["code"] = work / "code.tar"
        count = code_tar(layers["code"], Path(code), pyc=not args.no_pyc)
        print(f"code: {count} files{'' if args.no_pyc else ' (with .pyc)'}")
    else:
        print("code: skipped (no ComfyUI/ under --code-dir or $COMFYUI_SRC)")
    return layers


@dataclasses.dataclass
class Result:
    size: int = 0
    compress_s: float = 0.0
    extract_s: float = float("inf")
    decompress_s: float = float("inf")
    unpigz_s: float = float("inf")


def unpigz(blob: Path) -> float:
    """Seconds for `unpigz -c` (what containerd and Docker run for gzip when present)."""
    start = time.perf_counter()
    with blob.open("rb") as src:
        subprocess.run(["unpigz", "-c"], stdin=src, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure(args: argparse.Namespace, work: Path, layers: dict[str, Path], codecs: list[Codec]):
    results: dict[str, dict[str, Result]] = {}
    blobs: dict[tuple[str, str], Path] = {}
    for kind, tar_path in layers.items():
        results[kind] = {}
        for codec in codecs:
            blob = tar_path if codec.family == "tar" else work / f"{kind}.{codec.name}"
            start = time.perf_counter()
            if codec.family != "tar":
                codec.compress(tar_path, blob)
            results[kind][codec.name] = Result(
                size=blob.stat().st_size, compress_s=time.perf_counter() - start
            )
            blobs[kind, codec.name] = blob
    has_unpigz = shutil.which("unpigz") is not None
    out = Path(tempfile.mkdtemp(prefix="image-pull-out-", dir=args.extract_dir or work)) / "out"
    print(f"extracting under {out.parent.parent}")
    try:
        extract_rounds(args, layers, codecs, results, blobs, out, has_unpigz)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return results, has_unpigz


def extract_rounds(args, layers, codecs, results, blobs, out: Path, has_unpigz: bool) -> None:
    for n in range(args.rounds):
        for kind in layers:
            for codec in rotate(codecs, n):
                r = results[kind][codec.name]
                blob = blobs[kind, codec.name]
                r.extract_s = min(r.extract_s, extract(blob, codec, out))
                if codec.family != "tar":
                    r.decompress_s = min(r.decompress_s, decompress_only(blob, codec)[0])
                if codec.family == "gzip" and has_unpigz:
                    r.unpigz_s = min(r.unpigz_s, unpigz(blob))


def _rate(size: int, seconds: float) -> str:
    return "-" if seconds in (0, float("inf")) else f"{size / 1e6 / seconds:.0f} MB/s"


def print_layers(args, results: dict[str, dict[str, Result]], codecs: list[Codec]) -> None:
    print()
    print(f"Per layer, best of {args.rounds}; MB = 10^6 bytes of the uncompressed tar; one core.")
    print("size: compressed / tar. extract: decompress + tar extraction into a temp folder;")
    print("vs tar: its time / the plain tar's. decompress: to nothing, no extraction.")
    header = (
        f"{'layer':<5} {'tar MB':>7} {'codec':<7} {'size':>6} {'compress':>10} "
        f"{'extract':>8} {'vs tar':>7} {'decompress':>11} {'unpigz':>10}"
    )
    print(header)
    print("-" * len(header))
    for kind, per_codec in results.items():
        raw = per_codec["tar"].size
        ref = per_codec["tar"].extract_s
        for codec in codecs:
            r = per_codec[codec.name]
            compress = _rate(raw, r.compress_s) if codec.family != "tar" else "-"
            print(
                f"{kind:<5} {raw / 1e6:>7.1f} {codec.name:<7} {r.size / raw:>6.3f} "
                f"{compress:>10} {r.extract_s:>7.2f}s {r.extract_s / ref:>6.2f}x "
                f"{_rate(raw, r.decompress_s):>11} {_rate(raw, r.unpigz_s):>10}"
            )


def print_sample_levels(args, work: Path, layers: dict[str, Path], levels: list[int]) -> None:
    sample = args.sample_mib * MIB
    print()
    print(
        f"zstd levels on the first {args.sample_mib} MiB of each layer (slow to compress): "
        "size, decompression time and compression speed against zstd-3 on the same bytes"
    )
    base = Codec("zstd-3", "zstd", 3)
    for kind, tar_path in layers.items():
        limit = min(sample, tar_path.stat().st_size)
        base_blob = work / f"{kind}.sample.zstd-3"
        start = time.perf_counter()
        base.compress(tar_path, base_blob, limit)
        base_c = time.perf_counter() - start
        base_size = base_blob.stat().st_size
        base_t = min(decompress_only(base_blob, base)[0] for _ in range(args.rounds))
        parts = [f"{kind:<5} zstd-3 {base_size / limit:.3f} of the tar"]
        for level in levels:
            codec = Codec(f"zstd-{level}", "zstd", level)
            blob = work / f"{kind}.sample.{codec.name}"
            start = time.perf_counter()
            codec.compress(tar_path, blob, limit)
            took = time.perf_counter() - start
            t = min(decompress_only(blob, codec)[0] for _ in range(args.rounds))
            parts.append(
                f"{codec.name}: size {blob.stat().st_size / base_size:.3f}x, decompress "
                f"{t / base_t:.2f}x, compress {took / base_c:.0f}x the time"
            )
            blob.unlink()
        base_blob.unlink()
        print("; ".join(parts))


def print_paper(args, results: dict[str, dict[str, Result]], codecs: list[Codec], unpigz_ok):
    image = {k: float(v) for k, v in (p.split("=") for p in args.image_gb.split(",") if p)}
    measured = {k: gb for k, gb in image.items() if k in results}
    links = [float(x) for x in args.gbit.split(",") if x.strip()]
    print()
    print(f"The whole image on paper: each kind's measured ratios and rates at {args.image_gb} GB")
    if len(measured) < len(image):
        left = ", ".join(k for k in image if k not in measured)
        print(f"(not measured in this run, so left out: {left})")
    header = f"{'codec':<7} {'pulled GB':>9} {'vs tar':>7} "
    header += "".join(f"{f'at {g:g} Gbit/s':>13}" for g in links)
    header += f" {'decompress':>10} {'unpigz':>7} {'extract':>8}"
    print(header)
    pulled_tar = sum(measured.values())
    for codec in codecs:
        pulled = decompress = extract_s = pigz = 0.0
        for kind, gb in measured.items():
            r, raw = results[kind][codec.name], results[kind]["tar"].size
            pulled += gb * r.size / raw
            extract_s += gb * 1e9 * r.extract_s / raw
            if codec.family != "tar":
                decompress += gb * 1e9 * r.decompress_s / raw
            if codec.family == "gzip" and unpigz_ok:
                pigz += gb * 1e9 * r.unpigz_s / raw
        line = f"{codec.name:<7} {pulled:>9.1f} {pulled / pulled_tar:>6.2f}x "
        line += "".join(f"{pulled * 8 / g:>12.0f}s" for g in links)
        pigz_s = f"{pigz:.0f}s" if pigz else "-"
        line += f" {decompress:>9.0f}s {pigz_s:>7} {extract_s:>7.0f}s"
        print(line)
    print(
        "at N Gbit/s: the download alone. decompress: one core, C zlib or libzstd, no "
        "extraction; unpigz: the same with `unpigz -c`; extract: decompress + Python's "
        "tarfile (its per-file cost dominates env and code)."
    )


def run(args: argparse.Namespace, work: Path, codecs: list[Codec], sample_levels: list[int]):
    layers = build_layers(args, work)
    if not layers:
        print("nothing to measure")
        return 1
    results, unpigz_ok = measure(args, work, layers, codecs)
    print_layers(args, results, codecs)
    if not unpigz_ok:
        print("unpigz: not installed (apt-get install pigz), its column is empty")
    if sample_levels:
        print_sample_levels(args, work, layers, sample_levels)
    print_paper(args, results, codecs, unpigz_ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
