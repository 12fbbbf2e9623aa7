"""Model presets, loading and saving, device choice, and the one forward pass every trainer uses.

Presets are Llama-style ``transformers`` configs:

=========  ======  ======  =====  =====  ==========  ===========================================
preset     hidden  layers  heads  MLP    parameters  for
=========  ======  ======  =====  =====  ==========  ===========================================
``tiny``   192     4       4      512    ≈ 1.8 M     the CPU default; the shipped checkpoints
``small``  512     8       8      1408   ≈ 25 M      the GPU default
=========  ======  ======  =====  =====  ==========  ===========================================

``RLHFBOOK_MODEL=<hub id or local path>`` makes :func:`load_model` return any causal LM instead (for users with
a GPU and a network); the world's tokenizer then comes from the same place.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from rlhfbook_lab.lm import distributed
from rlhfbook_lab.paths import CHECKPOINTS, atomic_folder, resolve

__all__ = [
    "MAX_LENGTH",
    "autocast_dtype",
    "check_output_folder",
    "check_writable",
    "get_device",
    "init_model",
    "load_model",
    "make_config",
    "num_parameters",
    "resolve",
    "save_model",
    "shipped_checkpoints",
]

PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=1408),
}
MAX_LENGTH = 256  # positions the presets support (RoPE; no parameters depend on it)


def get_device() -> torch.device:
    """cuda > mps > cpu; under ``torchrun`` on GPUs, this process's GPU (``LOCAL_RANK``)."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"])) if "LOCAL_RANK" in os.environ else \
            torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on a CUDA device that supports it; ``None`` (plain fp32) elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def make_config(preset: str, tokenizer) -> LlamaConfig:
    """A ``LlamaConfig`` for ``preset`` sized to ``tokenizer``'s vocabulary and special tokens."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    return LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=p["num_attention_heads"],
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
        attn_implementation="sdpa",
        **p,
    )


def init_model(preset: str, tokenizer, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised model of ``preset`` (seeded: the same seed gives the same weights)."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(make_config(preset, tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def num_parameters(model: torch.nn.Module) -> int:
    """Trainable parameters, tied embeddings counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def shipped_checkpoints() -> list[str]:
    """The names of the checkpoints in ``data/checkpoints`` (``base-tiny``, ``sft-tiny``, ...)."""
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").exists()) if CHECKPOINTS.is_dir() \
        else []


def _choices() -> str:
    return (f"expected a shipped checkpoint ({', '.join(shipped_checkpoints())}), a folder written by "
            "save_pretrained, or, with network access, a Hugging Face hub id owner/name")


def load_model(name_or_path: str | Path | None = None, device: torch.device | str | None = None):
    """Load ``(model, tokenizer)``.

    ``name_or_path``: a shipped checkpoint (``"base-tiny"``, ``"sft-tiny"``), a local folder or a hub id. When
    it is ``None``, ``$RLHFBOOK_MODEL`` is used if set, else ``"base-tiny"``. The model is put in eval mode on
    ``device`` (default :func:`get_device`).
    """
    if name_or_path is None:
        name_or_path = os.environ.get("RLHFBOOK_MODEL", "base-tiny")
    src = resolve(name_or_path)
    if isinstance(src, Path) or Path(str(src)).exists():
        if not Path(src).is_dir():
            raise NotADirectoryError(f"{src} is a file; a model is a folder written by save_pretrained ({_choices()})")
        if not (Path(src) / "config.json").exists():
            raise FileNotFoundError(f"no model at {src}: expected a folder written by save_pretrained "
                                    f"(run `rlhfbook-lab pretrain` to build base-tiny; {_choices()})")
    elif "/" not in str(src) or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        # neither here nor a hub id to try (hub ids are owner/name, e.g. openai-community/gpt2), or the hub is off
        raise ValueError(f"unknown model {str(name_or_path)!r}: {_choices()}")
    device = torch.device(device) if device is not None else get_device()
    # float32 on a CPU whatever the file holds (a checkpoint may be stored in float16 to keep data/ small:
    # save_model(..., save_dtype=torch.float16)); on a GPU the file's own dtype
    dtype = torch.float32 if device.type == "cpu" else "auto"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=dtype).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(src))
    except OSError as e:  # not a folder here, and not a hub id that could be fetched (offline, or no such repo)
        if isinstance(src, Path):
            raise
        raise ValueError(f"unknown model {str(name_or_path)!r}: {_choices()}") from e
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        # padding with EOS would make the loss masks drop every real EOS (the model would never learn to stop)
        raise ValueError(f"the tokenizer of {name_or_path} needs a pad token distinct from EOS (it has "
                         f"pad={tokenizer.pad_token!r}, eos={tokenizer.eos_token!r}); add one and save the pair: "
                         "tokenizer.add_special_tokens({'pad_token': '<|pad|>'}); "
                         "model.resize_token_embeddings(len(tokenizer)); model.config.pad_token_id = "
                         "tokenizer.pad_token_id; model.save_pretrained(dir); tokenizer.save_pretrained(dir)")
    return model, tokenizer


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and make sure we can write in it; a clear ``PermissionError`` otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"cannot create the output folder {folder}: {e}") from e
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write to {folder}")


def check_output_folder(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse an existing non-empty ``out`` unless ``overwrite`` (a ``FileExistsError``), and make sure its parent
    is writable. Trainers call it before training, so a bad ``--out`` fails in a second, not after the run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; the output must be a folder (give another path)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    check_writable(out.parent)
    return out


def save_model(model, tokenizer, out: str | Path, overwrite: bool = False,
               extra_files: dict[str, str] | None = None, save_dtype: torch.dtype | None = None) -> Path:
    """Save model + tokenizer with ``save_pretrained`` (safetensors), atomically.

    ``extra_files`` maps file names to text written beside them (training metadata, curves). ``save_dtype``
    (e.g. ``torch.float16``) stores a copy of the weights in that dtype, half the bytes of float32 for a shipped
    checkpoint (every version of a binary stays in git history); the model in memory is not touched, and
    :func:`load_model` reads the file back as float32 on a CPU.

    Everything is written to a temporary folder beside ``out`` and renamed into place, so an interrupted run never
    leaves a half-written checkpoint. An existing non-empty ``out`` is an error unless ``overwrite``. Under
    ``torchrun`` only rank 0 writes (the replicas are identical); the others return ``out`` untouched.
    """
    if not distributed.is_main():
        return Path(out)
    out = check_output_folder(out, overwrite)
    with atomic_folder(out) as tmp:
        to_save = copy.deepcopy(model).to(save_dtype) if save_dtype is not None else model
        to_save.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return out


