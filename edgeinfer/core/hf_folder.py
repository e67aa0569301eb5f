"""A Hugging Face model folder read as data: its JSON files checked, its tokenizer loaded safely.

Nothing here runs code from the folder: a config or tokenizer config with `auto_map` (custom
Python) is refused, and transformers is always called with `trust_remote_code=False`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeinfer.core.errors import InputError, UnsupportedError
from edgeinfer.core.formats import read_json_object

# Files from which transformers builds a tokenizer; without one of them it invents a useless one.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "source.spm",
)


def _refuse_remote_code(data: dict[str, Any], file: Path) -> None:
    if data.get("auto_map"):
        raise UnsupportedError(
            f"{file} asks for custom code (auto_map); edgeinfer never runs remote code from a "
            "model folder. Export the model from your own factory function instead"
        )


def read_config(path: Path) -> dict[str, Any]:
    """config.json of a model folder, checked: a JSON object, no custom code."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a directory; give a Hugging Face model folder")
    file = path / "config.json"
    if not file.is_file():
        raise InputError(
            f"{path} has no config.json; a Hugging Face model folder needs config.json and safetensors weights"
        )
    config = read_json_object(file, "config")
    _refuse_remote_code(config, file)
    archs = config.get("architectures")
    if archs is not None and (not isinstance(archs, list) or not all(isinstance(a, str) for a in archs)):
        raise InputError(f"{file}: 'architectures' must be a list of class names, e.g. [\"BertModel\"]")
    return config


def check_tokenizer_files(path: Path) -> None:
    """Refuse a folder whose tokenizer files are missing, corrupt, or ask for custom code."""
    path = Path(path)
    tok_config = path / "tokenizer_config.json"
    if tok_config.is_file():
        _refuse_remote_code(read_json_object(tok_config, "tokenizer config"), tok_config)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(
            f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES[:4])} ...); copy the "
            "model's tokenizer into the folder (validation needs real token ids)"
        )
    tok_json = path / "tokenizer.json"
    if tok_json.is_file():
        data = read_json_object(tok_json, "tokenizer")
        model = data.get("model")
        if not isinstance(model, dict) or not model.get("vocab"):
            raise InputError(
                f"{tok_json} has no tokenizer model with a vocabulary; replace it with the model's own tokenizer.json"
            )


def load_tokenizer(path: Path | str, *, pad_with_eos: bool = True):
    """transformers' tokenizer for a folder, or one line saying why it cannot be used.

    `pad_with_eos` gives a tokenizer without a padding token the EOS (or UNK) token, for padded
    batches; the GGUF export turns it off, since the padding id it records must be the model's own.
    """
    path = Path(path)
    check_tokenizer_files(path)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # tokenizers raises plain Exception subclasses on corrupt files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"{path}: the tokenizer files cannot be loaded ({first[:200]}); replace them with the model's own"
        ) from None
    if pad_with_eos and tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def check_tokens_are_real(tokenizer, ids, path: Path | str, vocab_size: int | None = None) -> None:
    """Refuse validation inputs that are mostly the unknown token (the tokenizer does not fit the
    text), or that hold token ids the model has no embedding for (`vocab_size`, config.json's: the
    tokenizer belongs to another model)."""
    import numpy as np

    arr = np.asarray(ids)
    if arr.size == 0:
        raise InputError(f"{path}: the tokenizer produced no tokens for the sample text")
    if vocab_size is not None and int(arr.max()) >= vocab_size:
        raise InputError(
            f"{path}: the tokenizer gives token id {int(arr.max())} for the sample text, but the model's "
            f"vocab_size is {vocab_size} (config.json): the tokenizer files belong to another model; use the "
            "tokenizer the model was trained with"
        )
    unk = tokenizer.unk_token_id
    special = set(tokenizer.all_special_ids) - ({unk} if unk is not None else set())
    content = arr[~np.isin(arr, list(special))] if special else arr.ravel()
    if content.size == 0 or (unk is not None and np.mean(content == unk) > 0.5) or len(np.unique(content)) < 3:
        raise InputError(
            f"{path}: the tokenizer maps the sample text to (almost) only unknown or special tokens; "
            "it is not this model's tokenizer, or its vocabulary is empty"
        )


FEATURE_EXTRACTOR_FILE = "preprocessor_config.json"


# What a preprocessor's numbers may be: each sizes an allocation per clip or picture (Whisper pads
# every clip to chunk_length x sampling_rate samples; its mel filters are feature_size x n_fft), so
# a 100000-second chunk in a 1 KB file is refused here rather than found by the kernel at 23 GB.
_PREPROCESSOR_RANGES = {
    "sampling_rate": (1_000, 768_000),
    "chunk_length": (1, 600),
    "n_samples": (1, 600 * 48_000),
    "nb_max_frames": (1, 600 * 1_000),
    "feature_size": (1, 1_024),
    "num_mel_bins": (1, 1_024),
    "n_fft": (16, 65_536),
    "hop_length": (1, 65_536),
    "max_length": (1, 1 << 20),
    "shortest_edge": (1, 8_192),
    "longest_edge": (1, 8_192),
    "height": (1, 8_192),
    "width": (1, 8_192),
}


def _check_preprocessor_sizes(config: dict[str, Any], file: Path) -> None:
    def check(key: str, value: Any) -> None:
        low, high = _PREPROCESSOR_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InputError(f"{file}: {key} is {value!r}; it must be a number from {low} to {high}")

    for key, value in config.items():
        if key in _PREPROCESSOR_RANGES and value is not None:
            check(key, value)
        elif key in ("size", "crop_size") and isinstance(value, dict):
            for k, v in value.items():
                if k in _PREPROCESSOR_RANGES and v is not None:
                    check(k, v)
        elif key in ("size", "crop_size") and value is not None and not isinstance(value, (dict, list)):
            check("height", value)
    rate, chunk = config.get("sampling_rate"), config.get("chunk_length")
    if isinstance(rate, (int, float)) and isinstance(chunk, (int, float)) and rate * chunk > 600 * 48_000:
        raise InputError(
            f"{file}: chunk_length x sampling_rate is {rate * chunk:,.0f} samples per clip; at most {600 * 48_000:,}"
        )


def _load_preprocessor(path: Path, auto_class: str, what: str, missing: str, required: bool = True) -> Any:
    """transformers' `auto_class` loaded from a folder's preprocessor_config.json, checked as data."""
    file = path / FEATURE_EXTRACTOR_FILE
    if not file.is_file():
        if not required:
            return None
        raise InputError(f"{path} has no {FEATURE_EXTRACTOR_FILE}: {missing}")
    config = read_json_object(file, f"{what} config")
    _refuse_remote_code(config, file)
    _check_preprocessor_sizes(config, file)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    try:
        return getattr(transformers, auto_class).from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False
        )
    except Exception as e:  # a config that does not fit the class fails in many ways
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{file} cannot be loaded as {what} ({first[:200]})") from None


def load_feature_extractor(path: Path | str) -> Any:
    """transformers' audio feature extractor for a folder (preprocessor_config.json), checked as data."""
    return _load_preprocessor(
        Path(path),
        "AutoFeatureExtractor",
        "a feature extractor",
        "a speech model needs its feature extractor's settings (mel bins, sampling rate, chunk length); "
        "copy the file from the model's repository",
    )


def load_image_processor(path: Path | str, *, required: bool = True):
    """transformers' image processor for a folder (preprocessor_config.json), checked as data; None
    when the folder has none and it is not `required`."""
    return _load_preprocessor(
        Path(path),
        "AutoImageProcessor",
        "an image processor",
        "an image model's example pictures are sized and normalised by its image processor; copy the file "
        "from the model's repository, or pass --image-size HxW (e.g. 224x224) to validate on random pixels of "
        "that size",
        required,
    )
