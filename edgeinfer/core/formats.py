"""Checks of the files a user hands edgeinfer, before any library parses them.

GGUF, ONNX, safetensors and the JSON files of a Hugging Face folder are read here with every
size checked against the file, so a truncated, mutated or hostile file becomes one InputError
instead of a traceback deep inside a parser, or a crash inside llama.cpp.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeinfer.core.errors import ConfigError, InputError, UnsupportedError
from edgeinfer.core.io import require_file

# safetensors dtype names -> bytes per element (the sub-byte and fp8 types are not read here).
SAFETENSORS_DTYPES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
}
# A safetensors header larger than this is refused before it is read (the format's own limit).
MAX_SAFETENSORS_HEADER = 100 * 2**20
# Numbers of elements beyond this are a corrupt header, not a model (2^48 floats is a petabyte).
MAX_ELEMENTS = 2**48


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---------------------------------------------------------------------------------- JSON


MAX_JSON_BYTES = 64 << 20  # config, sidecar, manifest: a few KB; Gemma 3's tokenizer.json is 33 MB
MAX_TEXT_BYTES = 64 << 20  # a text to score or calibrate on: a book is a few MB


def _within_budget(path: Path, what: str, max_bytes: int) -> None:
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{what} {path} is {size / 2**20:,.0f} MiB; at most {max_bytes >> 20} MiB are read")


def read_json_object(
    path: Path, what: str, hint: str = "replace it", max_bytes: int = MAX_JSON_BYTES
) -> dict[str, Any]:
    """A JSON file of bounded size that must hold an object (config.json, tokenizer.json, a sidecar)."""
    try:
        _within_budget(Path(path), what, max_bytes)
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {path} is not text (binary or corrupt); {hint}") from None
    except OSError as e:
        raise InputError(f"{what} {path} cannot be read: {e.strerror or e}") from e
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, or an integer of 5,000 digits
        raise InputError(f"{what} {path} is not valid JSON ({_first_line(e)}); {hint}") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a JSON object, not a {type(data).__name__}; {hint}")
    return data


def read_text_file(path: Path, what: str = "text file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file of bounded size, or one line saying why not (binary, another encoding)."""
    path = require_file(path, what)
    _within_budget(path, what, max_bytes)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {e.start}); convert it, e.g. iconv -t UTF-8") from None
    except OSError as e:
        raise InputError(f"{what} {path} cannot be read: {e.strerror or e}") from None


# ---------------------------------------------------------------------------------- safetensors


@dataclass(frozen=True)
class SafetensorsEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # byte offsets in the data section
    end: int


def read_safetensors_header(file: Path) -> dict[str, SafetensorsEntry]:
    """The tensor table of a safetensors file, every entry checked against the file's length."""
    file = require_file(file, "weights file")
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(f"{file.name} is not a safetensors file ({size} bytes); re-download it")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise InputError(
                f"{file.name} is truncated or not safetensors (a header of {n} bytes in a "
                f"{size}-byte file); re-download it"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InputError(f"{file.name} has a corrupt safetensors header (not JSON); re-download it") from None
    if not isinstance(header, dict):
        raise InputError(f"{file.name} has a corrupt safetensors header (not a JSON object); re-download it")
    header.pop("__metadata__", None)
    data_size = size - 8 - n
    entries: dict[str, SafetensorsEntry] = {}
    for name, info in header.items():
        entries[name] = _safetensors_entry(file.name, name, info, data_size)
    # The tensors must tile the data section exactly, as the safetensors library itself requires
    # (found by fuzzing: a gap made it refuse a file this check had accepted).
    end = 0
    for name, e in sorted(entries.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if e.begin != end:
            raise InputError(
                f"{file.name}: tensor {name!r} starts at byte {e.begin} of the data section, not {end} "
                "(a gap or an overlap); the file is corrupt, re-download or re-save it"
            )
        end = e.end
    if end != data_size:
        raise InputError(
            f"{file.name}: the tensors cover {end} of the {data_size} data bytes; the file is corrupt "
            "or truncated, re-download or re-save it"
        )
    return entries


def _safetensors_entry(file: str, name: str, info: Any, data_size: int) -> SafetensorsEntry:
    def bad(why: str) -> InputError:
        return InputError(f"{file}: tensor {name!r} {why}; the file is corrupt, re-download or re-save it")

    if not isinstance(info, dict):
        raise bad("has no dtype/shape/data_offsets record")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise bad("has no dtype")
    if dtype not in SAFETENSORS_DTYPES:
        raise UnsupportedError(
            f"{file}: tensor {name!r} has dtype {dtype!r}; edgeinfer reads {', '.join(SAFETENSORS_DTYPES)}"
        )
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad(f"has shape {shape!r}, not a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise bad("has no valid data_offsets [begin, end]")
    begin, end = offsets
    numel = math.prod(shape)
    if numel > MAX_ELEMENTS:
        raise bad(f"claims {numel:.3g} elements")
    if not 0 <= begin <= end:
        raise bad(f"has data_offsets [{begin}, {end}]")
    if end > data_size:
        raise InputError(
            f"{file} is truncated: tensor {name!r} needs bytes {begin}-{end} of the data section, the "
            f"file holds {data_size}; re-download it"
        )
    if end - begin != numel * SAFETENSORS_DTYPES[dtype]:
        raise bad(f"has {end - begin} bytes for shape {shape} of {dtype}")
    return SafetensorsEntry(dtype, tuple(shape), begin, end)


# ---------------------------------------------------------------------------------- GGUF


def open_gguf(path: Path, *, require_tensors: bool = True):
    """gguf-py's reader over `path`, after checking the file is a whole, sane GGUF.

    llama.cpp never sees a file that has not passed this: its loader trusts the header's sizes.
    Parsing a large vocabulary takes seconds, so a checked file is remembered by its path, size
    and modification time.
    """
    path = require_file(path, "model")
    stat = path.stat()
    reader = _open_gguf(path.resolve(), stat.st_size, stat.st_mtime_ns)
    if require_tensors and not reader.tensors:
        raise InputError(f"{path.name} holds no tensors; it is not a model (re-export it)")
    return reader


# An importance matrix holds one float per weight column (per expert): a few MB for a 7B model,
# hundreds for the largest MoE models; anything larger is not an imatrix.
MAX_IMATRIX_BYTES = 2 << 30


def open_gguf_imatrix(path: Path):
    """gguf-py's reader over a llama.cpp importance-matrix file (`general.type = imatrix`), after the
    same whole-file checks as a model and a size budget; its tensors' meaning is checked by the caller."""
    path = require_file(path, "importance matrix")
    stat = path.stat()
    if stat.st_size > MAX_IMATRIX_BYTES:
        raise InputError(
            f"{path.name} is {stat.st_size / 2**20:,.0f} MiB; an importance matrix is at most "
            f"{MAX_IMATRIX_BYTES >> 20} MiB (is it a model?)"
        )
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise InputError(
            f"{path.name} is not a GGUF importance matrix (llama-imatrix's older .dat format? convert it with "
            "llama-imatrix --in-file OLD.dat -o NEW.gguf)"
        )
    reader = _open_gguf(path.resolve(), stat.st_size, stat.st_mtime_ns, model=False)
    if gguf_string(reader, "general.type") != "imatrix":
        raise InputError(f"{path.name} is a GGUF but not an importance matrix (general.type is not 'imatrix')")
    return reader


@functools.lru_cache(maxsize=8)
def _open_gguf(path: Path, size: int, mtime_ns: int, model: bool = True):
    import numpy as np

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise InputError(f"{path} is not a GGUF file (bad magic); re-download or re-export it")
    scan_gguf_header(path)
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
    except MemoryError:
        raise InputError(
            f"{path.name}: the GGUF header declares impossibly large arrays; the file is corrupt"
        ) from None
    except Exception as e:  # gguf-py raises ValueError, IndexError, struct.error ... on a mutated header
        raise InputError(
            f"{path.name} is a truncated or corrupt GGUF ({_first_line(e)}); re-download or re-export it"
        ) from None
    if model:
        _check_gguf_model_keys(reader, path.name)
    for t in reader.tensors:
        numel = int(np.prod([int(d) for d in t.shape], dtype=np.float64))
        if numel <= 0 or numel > MAX_ELEMENTS:
            raise InputError(f"{path.name}: tensor {t.name} has shape {list(t.shape)}; the file is corrupt")
        if int(t.data_offset) + int(t.n_bytes) > size:
            raise InputError(
                f"{path.name}: tensor {t.name} ends past the end of the file (truncated?); re-download or re-export it"
            )
    return reader


# GGUF value types: fixed sizes in bytes (8 is a string, 9 an array).
_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
# The largest arrays in real GGUFs are vocabularies and merges (a few hundred thousand entries).
MAX_GGUF_ARRAY = 1 << 22
MAX_GGUF_ELEMENTS = 1 << 23


def scan_gguf_header(path: Path) -> int:
    """Walk a GGUF header checking every count and length against the bytes that remain; return
    the header's length.

    gguf-py's reader trusts the header: an array count of 2^40 in a small file makes it loop and
    allocate until the process is killed (found by fuzzing: 24 GB in seconds). This walk only
    moves an offset, so a hostile header costs nothing.
    """
    import mmap

    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        size = len(buf)
        pos = 0
        elements = 0

        def bad(why: str) -> InputError:
            return InputError(
                f"{Path(path).name} is a truncated or corrupt GGUF ({why} at byte {pos}); re-download or re-export it"
            )

        def take(n: int) -> int:
            nonlocal pos
            if n < 0 or pos + n > size:
                raise bad(f"{n} more bytes needed, {size - pos} left")
            start = pos
            pos += n
            return start

        def u32() -> int:
            return struct.unpack_from("<I", buf, take(4))[0]

        def u64() -> int:
            return struct.unpack_from("<Q", buf, take(8))[0]

        def string() -> None:
            take(u64())

        def value(kind: int, depth: int = 0) -> None:
            nonlocal elements
            if kind in _GGUF_SCALAR_SIZES:
                take(_GGUF_SCALAR_SIZES[kind])
            elif kind == 8:
                string()
            elif kind == 9:
                item, count = u32(), u64()
                if depth > 2 or count > MAX_GGUF_ARRAY:
                    raise bad(f"an array of {count} entries")
                elements += count
                if elements > MAX_GGUF_ELEMENTS:
                    raise bad(f"{elements} array entries in all")
                if item in _GGUF_SCALAR_SIZES:
                    take(count * _GGUF_SCALAR_SIZES[item])
                else:
                    if count * 8 > size - pos:  # every string or array entry has an 8-byte length at least
                        raise bad(f"an array of {count} entries in {size - pos} bytes")
                    for _ in range(count):
                        value(item, depth + 1)
            else:
                raise bad(f"unknown value type {kind}")

        take(4)  # magic
        version = u32()
        if version not in (2, 3):
            raise bad(f"GGUF version {version}; edgeinfer reads versions 2 and 3")
        n_tensors, n_kv = u64(), u64()
        if n_kv * 13 > size - pos or n_tensors * 32 > size - pos:
            raise bad(f"{n_tensors} tensors and {n_kv} keys in a {size}-byte file")
        for _ in range(n_kv):
            string()
            value(u32())
        for _ in range(n_tensors):
            string()
            n_dims = u32()
            if not 1 <= n_dims <= 4:
                raise bad(f"a tensor with {n_dims} dimensions")
            take(8 * n_dims + 4 + 8)
        return pos


_INT_TYPES = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "UINT64", "INT64"}
# Architecture hyperparameters llama.cpp sizes its buffers from: key suffix -> (low, high).
_HPARAM_RANGES = {
    "context_length": (1, 1 << 24),
    "embedding_length": (1, 1 << 20),
    "block_count": (1, 1 << 12),
    "feed_forward_length": (0, 1 << 22),
    "attention.head_count": (0, 1 << 14),
    "attention.head_count_kv": (0, 1 << 14),
    "attention.key_length": (1, 1 << 16),
    "attention.value_length": (1, 1 << 16),
    "rope.dimension_count": (0, 1 << 16),
    "expert_count": (0, 1 << 12),
    "expert_used_count": (0, 1 << 12),
    "vocab_size": (1, 1 << 24),
}
_BYTE_TOKEN = re.compile(rb"<0x([0-9A-Fa-f]{2})>")
_SPECIAL_TOKENS = ("bos", "eos", "unknown", "padding", "separator", "mask", "eot", "eom")


def _field_ints(reader, key: str, name: str) -> list[int] | None:
    """Every integer of a scalar or array field; a field of another type is refused."""
    field = reader.fields.get(key)
    if field is None:
        return None
    kinds = [t.name for t in field.types]
    if not kinds or kinds[-1] not in _INT_TYPES or (len(kinds) > 1 and kinds[0] != "ARRAY"):
        raise InputError(f"{name}: header key {key} has type {'/'.join(kinds)}, not an integer; the file is corrupt")
    return [int(field.parts[i][0]) for i in field.data]


def _check_gguf_model_keys(reader, name: str) -> None:
    """The header values llama.cpp allocates from, checked for range and for agreement with the tensors.

    Found by fuzzing: a mutated context_length or head count loads in gguf-py and then makes
    llama.cpp allocate a negative or huge buffer, or abort on an assertion.
    """

    def bad(why: str) -> InputError:
        return InputError(f"{name}: {why}; the file is corrupt (re-download or re-export it)")

    arch = gguf_string(reader, "general.architecture")
    if arch is None:
        raise bad("the header names no general.architecture")
    values: dict[str, list[int]] = {}
    for suffix, (low, high) in _HPARAM_RANGES.items():
        ints = _field_ints(reader, f"{arch}.{suffix}", name)
        if ints is None:
            continue
        if not ints or any(not low <= v <= high for v in ints):
            raise bad(f"{arch}.{suffix} = {ints[:4]} is outside {low} ... {high}")
        values[suffix] = ints
    embd = values.get("embedding_length", [0])[0]
    layers = values.get("block_count", [0])[0]
    for suffix in ("attention.head_count", "attention.head_count_kv", "feed_forward_length"):
        per_layer = values.get(suffix, [])
        if len(per_layer) > 1 and len(per_layer) != layers:
            raise bad(f"{arch}.{suffix} lists {len(per_layer)} layers, block_count is {layers}")
    heads, kv_heads = values.get("attention.head_count", []), values.get("attention.head_count_kv", [])
    for h, kv in zip(heads or [0], kv_heads or heads or [0]):
        if h and kv and (h % kv or (embd and "attention.key_length" not in values and embd % h)):
            raise bad(f"{h} attention heads with {kv} KV heads do not divide the {embd}-wide embedding")
    blocks = {
        int(t.name.split(".")[1])
        for t in reader.tensors
        if t.name.startswith("blk.") and t.name.split(".")[1].isdigit()
    }
    if blocks and layers and max(blocks) >= layers:
        raise bad(f"tensors for block {max(blocks)} exist, but block_count is {layers}")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None:
        return
    n_vocab = len(tokens.data)
    if n_vocab == 0:
        raise bad("the tokenizer has no tokens")
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        field = reader.fields.get(key)
        if field is not None and len(field.data) != n_vocab:
            raise bad(f"{key} has {len(field.data)} entries for {n_vocab} tokens")
    types = _field_ints(reader, "tokenizer.ggml.token_type", name) or []
    if any(not 0 <= t <= 6 for t in types):
        raise bad("tokenizer.ggml.token_type holds values outside the token types 0 ... 6")
    texts = [bytes(tokens.parts[i]) for i in tokens.data]
    for i, text in enumerate(texts):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            raise bad(f"token {i} is not valid UTF-8") from None
    # llama.cpp reads token texts as C strings (up to a NUL), maps text -> id, and aborts the
    # process when two ids share a text (GGML_ASSERT id_to_token.size() == token_to_id.size(),
    # found by fuzzing: a byte of "\u2581t31" turned to NUL made it "\u2581t3" twice).
    as_c = [t.split(b"\0", 1)[0] for t in texts]
    if len(set(as_c)) != len(as_c):
        seen: set[bytes] = set()
        dup = next(t for t in as_c if t in seen or seen.add(t))
        raise bad(f"the token {dup[:40]!r} appears twice in the vocabulary")
    byte_tokens = [texts[i] for i, t in enumerate(types) if t == 6]  # 6: BYTE
    if byte_tokens:
        # llama.cpp looks bytes up in a map of exactly these tokens and aborts the process (an
        # uncaught std::out_of_range, found by fuzzing) when one of the 256 is missing.
        byte_values = {int(m.group(1), 16) for t in byte_tokens if (m := _BYTE_TOKEN.fullmatch(t))}
        if len(byte_tokens) != 256 or len(byte_values) != 256:
            raise bad(
                f"the tokenizer's byte tokens are not exactly <0x00> ... <0xFF> ({len(byte_values)} distinct of "
                f"{len(byte_tokens)})"
            )
    for special in _SPECIAL_TOKENS:
        ids = _field_ints(reader, f"tokenizer.ggml.{special}_token_id", name)
        if ids and not all(0 <= i < n_vocab for i in ids):
            raise bad(f"tokenizer.ggml.{special}_token_id = {ids[0]} is not one of the {n_vocab} tokens")
    embd_tensor = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd_tensor is not None and n_vocab > max(int(d) for d in embd_tensor.shape):
        raise bad(f"{n_vocab} tokens but the embedding has rows for {max(int(d) for d in embd_tensor.shape)}")


def gguf_string(reader, key: str) -> str | None:
    """A string field of a GGUF header, or None when absent or not a string."""
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    try:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (IndexError, UnicodeDecodeError, TypeError):
        return None


def gguf_int(reader, key: str) -> int | None:
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    try:
        value = field.parts[field.data[0]]
        return int(value[0]) if len(value) == 1 else None
    except (IndexError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------- ONNX


def load_onnx(path: Path, *, load_external_data: bool = False):
    """The ONNX ModelProto at `path`, or one line saying why the file is not a usable model."""
    import onnx

    path = require_file(path, "model")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty; it is not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as e:  # protobuf's DecodeError, or a missing external-data file
        raise InputError(f"{path} is not a valid ONNX model ({_first_line(e)}); re-export it") from None
    if not model.graph.node or not model.graph.output:
        raise InputError(f"{path} holds no ONNX graph (no nodes or no outputs); re-export it")
    return model


# ---------------------------------------------------------------------------------- npz


# What one .npz may unpack to unless a caller gives its own budget: far above any batch of
# evaluation data or golden outputs, far below what a small hostile file can otherwise demand.
MAX_NPZ_BYTES = 1 << 30


def npz_declared_bytes(path: Path, what: str = "data file") -> dict[str, int]:
    """Bytes each array of an .npz will take once loaded, read from the .npy headers alone (a few
    hundred bytes each): numpy allocates the declared shape x dtype before reading the data, so a
    1 MB file of compressed zeros can ask for 24 GB. Not an .npy member, a pickled dtype or an
    impossible shape is refused."""
    import zipfile

    from numpy.lib import format as npy

    sizes: dict[str, int] = {}
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
            if len(members) > 10_000:
                raise InputError(f"{what} {path} holds {len(members)} arrays; at most 10000")
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise InputError(
                        f"{what} {path} holds {info.filename!r}, not an .npy array; write it with numpy.savez"
                    )
                with z.open(info) as fh:
                    major, _ = npy.read_magic(fh)
                    read = {1: npy.read_array_header_1_0, 2: npy.read_array_header_2_0}.get(major)
                    if read is None:
                        raise ValueError(f"unsupported .npy format version {major}")
                    shape, _, dtype = read(fh, max_header_size=10_000)
                if dtype.hasobject:
                    raise InputError(
                        f"{what} {path} holds Python objects, not numeric arrays; edgeinfer never unpickles "
                        "data (save plain numeric arrays)"
                    )
                n = 1
                for d in shape:
                    n *= int(d)
                    if n > MAX_ELEMENTS:
                        raise InputError(f"{what} {path}: {info.filename} declares an impossible shape {shape}")
                sizes[info.filename[: -len(".npy")]] = n * max(dtype.itemsize, 1)
    except InputError:
        raise
    except Exception as e:  # BadZipFile, a truncated member, a malformed header
        raise InputError(f"{what} {path} is a corrupt .npz ({_first_line(e)})") from None
    return sizes


def load_npz(path: Path, what: str = "data file", max_bytes: int = MAX_NPZ_BYTES) -> dict[str, Any]:
    """Every array of an .npz, read without unpickling and only when the arrays its headers declare
    fit `max_bytes` and this machine's free memory; one line when the file is anything else."""
    import zipfile

    import numpy as np

    from edgeinfer.core.limits import check_fits_in_memory

    path = require_file(path, what)
    if not zipfile.is_zipfile(path):
        raise InputError(f"{what} {path} is not an .npz (not a zip archive of arrays); write it with numpy.savez")
    total = sum(npz_declared_bytes(path, what).values())
    if total > max_bytes:
        raise InputError(
            f"{what} {path} declares {total / 2**20:,.0f} MiB of arrays; at most {max_bytes / 2**20:,.0f} MiB "
            "are read from such a file (pass smaller batches)"
        )
    try:
        check_fits_in_memory(total, f"{what} {path}", "Pass smaller batches.")
    except ConfigError as e:
        raise InputError(str(e)) from None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(
                f"{what} {path} holds Python objects, not numeric arrays; edgeinfer never unpickles "
                "data (save plain numeric arrays)"
            ) from None
        raise InputError(f"{what} {path} is a corrupt .npz ({_first_line(e)})") from None
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError on a truncated member
        raise InputError(f"{what} {path} is a corrupt .npz ({_first_line(e)})") from None
