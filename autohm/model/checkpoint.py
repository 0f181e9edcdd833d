"""Checkpoint I/O: read Mamba v1 checkpoints in the state-spaces (mamba_ssm) and transformers
formats, write config.json + model.safetensors.

Weights are read with safetensors or torch.load(weights_only=True), never by unpickling arbitrary
objects. Every problem is a CheckpointError naming the file and the key.
"""

from __future__ import annotations

import json
import pickle
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from autohm.errors import CheckpointError
from autohm.files import write_tensors, write_text
from autohm.model.config import MambaConfig

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HEAD_FILE = "head.safetensors"  # a classifier's head beside its backbone
FORMATS = ("transformers", "state-spaces")

# transformers MambaConfig field -> MambaConfig field
_HF_FIELDS = {
    "hidden_size": "d_model",
    "num_hidden_layers": "n_layer",
    "vocab_size": "vocab_size",
    "state_size": "d_state",
    "conv_kernel": "d_conv",
    "expand": "expand",
    "time_step_rank": "dt_rank",
    "time_step_min": "dt_min",
    "time_step_max": "dt_max",
    "time_step_init_scheme": "dt_init",
    "time_step_scale": "dt_scale",
    "time_step_floor": "dt_init_floor",
    "use_conv_bias": "conv_bias",
    "use_bias": "bias",
    "layer_norm_epsilon": "norm_epsilon",
    "residual_in_fp32": "residual_in_fp32",
    "tie_word_embeddings": "tie_embeddings",
}
# transformers fields with no effect on the computation (generic PretrainedConfig fields, options
# of its kernels and initialisation, and the state-spaces duplicates its mamba-*-hf files carry).
_HF_IGNORED = {
    "_name_or_path",
    "architectures",
    "model_type",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "sep_token_id",
    "decoder_start_token_id",
    "use_cache",
    "initializer_range",
    "rescale_prenorm_residual",
    "use_mambapy",
    "use_associative_scan",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "chunk_size_feed_forward",
    "is_encoder_decoder",
    "id2label",
    "label2id",
    "problem_type",
    "torchscript",
    "tie_encoder_decoder",
    "pruned_heads",
    "tf_legacy_loss",
    "use_bfloat16",
    "finetuning_task",
    "tokenizer_class",
    "prefix",
    "task_specific_params",
    "cross_attention_hidden_size",
    "add_cross_attention",
    "is_decoder",
    "num_labels",
    "d_model",
    "n_layer",
    "d_inner",
    "ssm_cfg",
    "fused_add_norm",
    "rms_norm",
    "pad_vocab_size_multiple",
    "intermediate_size",
    "hidden_act",
}
_STATE_SPACES_TOP = {
    "d_model",
    "n_layer",
    "vocab_size",
    "rms_norm",
    "norm_epsilon",
    "residual_in_fp32",
    "fused_add_norm",
    "pad_vocab_size_multiple",
    "tie_embeddings",
}
# autohm's extensions for compact models, written only when set (mamba_ssm cannot hold them)
_COMPACT = {"layer_d_inner", "layer_d_state", "x_proj_bias"}
_STATE_SPACES_TOP |= _COMPACT
_STATE_SPACES_SSM = {f.name for f in fields(MambaConfig)} - _STATE_SPACES_TOP
_STATE_SPACES_IGNORED = {"use_fast_path", "layer"}


def _fail(file: Path | str, message: str) -> CheckpointError:
    """One line: '<file>: <message>', whitespace and newlines of wrapped errors collapsed."""
    return CheckpointError(f"{file}: {' '.join(message.split())}")


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """A local checkpoint directory; a Hub id is downloaded when huggingface_hub is installed."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise _fail(path, "is a file; expected a checkpoint directory with config.json")
    text = str(path_or_id)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise CheckpointError(f"checkpoint directory not found: {path}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{text!r} is not a local directory; to download it from the Hugging Face Hub "
            "install huggingface_hub (pip install 'autohm[hub]')"
        ) from None
    patterns = [CONFIG_FILE, "*.safetensors", "*.bin", "*.index.json"]
    try:
        return Path(snapshot_download(text, allow_patterns=patterns))
    except Exception as error:  # network, authentication or missing repository
        raise CheckpointError(
            f"{text!r}: not a local directory, and the Hub download "
            f"failed: {type(error).__name__}: {error}"
        ) from None


def _hf_config(raw: dict[str, Any], file: Path) -> MambaConfig:
    if raw.get("model_type", "mamba") != "mamba":
        raise _fail(file, f"model_type {raw['model_type']!r} is not supported (Mamba v1 only)")
    if raw.get("hidden_act", "silu") != "silu":
        raise _fail(file, f"hidden_act {raw['hidden_act']!r} is not supported (only 'silu')")
    values = {}
    for key, value in raw.items():
        if key in _HF_FIELDS:
            values[_HF_FIELDS[key]] = value
        elif key not in _HF_IGNORED:
            raise _fail(file, f"unknown config field {key!r}")
    values["pad_vocab_size_multiple"] = 1  # the embedding has exactly vocab_size rows
    config = _build(values, file)
    inner = raw.get("intermediate_size")
    if inner is not None and inner != config.d_inner:
        raise _fail(file, f"intermediate_size {inner} != expand * hidden_size = {config.d_inner}")
    return config


def _state_spaces_config(raw: dict[str, Any], file: Path) -> MambaConfig:
    values = {}
    for key, value in raw.items():
        if key in _STATE_SPACES_TOP:
            values[key] = value
        elif key == "ssm_cfg":
            values.update(_ssm_cfg(value or {}, file))
        elif key == "d_intermediate" and value:
            raise _fail(file, f"d_intermediate {value}: MLP blocks are not supported")
        elif key == "attn_layer_idx" and value:
            raise _fail(file, f"attn_layer_idx {value}: attention layers are not supported")
        elif key not in ("d_intermediate", "attn_layer_idx", "attn_cfg"):
            raise _fail(file, f"unknown config field {key!r}")
    return _build(values, file)


def _ssm_cfg(ssm_cfg: dict[str, Any], file: Path) -> dict[str, Any]:
    if ssm_cfg.get("layer", "Mamba1") != "Mamba1":
        raise _fail(file, f"ssm_cfg.layer {ssm_cfg['layer']!r} is not supported (Mamba1 only)")
    for key in ssm_cfg:
        if key not in _STATE_SPACES_SSM and key not in _STATE_SPACES_IGNORED:
            raise _fail(file, f"unknown config field 'ssm_cfg.{key}'")
    return {k: v for k, v in ssm_cfg.items() if k in _STATE_SPACES_SSM}


def _build(values: dict[str, Any], file: Path) -> MambaConfig:
    for required in ("d_model", "n_layer", "vocab_size"):
        if required not in values:
            raise _fail(file, f"missing config field for {required!r}")
    try:
        return MambaConfig(**values)
    except (TypeError, ValueError) as error:
        raise _fail(file, str(error)) from None


def read_config(directory: Path) -> MambaConfig:
    """Parse config.json in either format (transformers when it has hidden_size)."""
    file = directory / CONFIG_FILE
    if not file.is_file():
        raise _fail(directory, f"no {CONFIG_FILE} in this checkpoint directory")
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _fail(file, f"not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise _fail(file, "expected a JSON object")
    return _hf_config(raw, file) if "hidden_size" in raw else _state_spaces_config(raw, file)


def _load_weight_file(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of one weight file, all floating point."""
    try:
        if file.suffix == ".safetensors":
            state = load_file(str(file), device="cpu")
        else:
            with file.open("rb") as handle:
                start = handle.read(4)
            if not start.startswith((b"PK\x03\x04", b"\x80")):  # torch's zip, or a pickle
                raise _fail(file, f"not a PyTorch weight file (it starts with {start!r})")
            state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found is None:
            raise _fail(file, f"not a PyTorch weight file ({error})") from None
        raise _fail(
            file,
            f"cannot read weights safely: it refers to the global {found.group(1)!r}, and "
            "autohm loads only tensors (torch.load with weights_only=True)",
        ) from None
    except CheckpointError:
        raise
    except Exception as error:  # a file that is not what its name says fails in many ways
        raise _fail(file, f"cannot read weights: {type(error).__name__}: {error}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(file, "expected a flat mapping of parameter names to tensors")
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise _fail(file, f"tensor {key!r} is {tensor.dtype}; weights must be floating point")
    return state


def _inside(directory: Path, name: str, file: Path) -> Path:
    """directory / name, refused when it leads out of the checkpoint directory (a path with
    '..', an absolute one, or a symlink out; a Hub snapshot's links into its own repository
    folder are fine)."""
    path = directory / name
    root = directory.resolve()
    if root.parent.name == "snapshots":  # huggingface_hub: snapshots/<rev>/ links to ../../blobs
        root = root.parent.parent
    if root != path.resolve() and root not in path.resolve().parents:
        raise _fail(file, f"{name!r} lies outside the checkpoint directory")
    return path


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """All tensors of the checkpoint (sharded files joined) and the file they were read from."""
    for name in WEIGHT_FILES:
        single, index = directory / name, directory / f"{name}.index.json"
        if single.is_file():
            return _load_weight_file(_inside(directory, name, single)), single
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, AttributeError) as error:
                raise _fail(index, f"not a valid weight index: {error!r}") from None
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                if not isinstance(shard, str):
                    raise _fail(index, f"shard {shard!r} is not a file name")
                state.update(_load_weight_file(_inside(directory, shard, index)))
            return state, index
    raise _fail(directory, f"no weights: expected one of {', '.join(WEIGHT_FILES)}")


def normalise_keys(state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """Map transformers names onto mamba_ssm's (embeddings -> embedding, a bare MambaModel gets
    the backbone. prefix) and drop a tied lm_head."""
    if not any(key.startswith("backbone.") for key in state):
        state = {(k if k.startswith("lm_head.") else f"backbone.{k}"): v for k, v in state.items()}
    renamed = {
        k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in state.items()
    }
    if tied:
        renamed.pop("lm_head.weight", None)
    return renamed


def load_weights_into(model: torch.nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    """Strictly put `state` into `model`: every key present, none extra, every shape equal,
    checked before anything is allocated (the model may live on the meta device); the tensors
    take the model's dtypes."""
    expected = model.state_dict()
    if getattr(getattr(model, "config", None), "tie_embeddings", False):
        expected.pop("lm_head.weight", None)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    for keys, what in ((missing, "missing tensor"), (unexpected, "unexpected tensor")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise _fail(file, f"{what} {keys[0]!r}{more}")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise _fail(
                file,
                f"tensor {key!r} has shape {tuple(state[key].shape)}, but "
                f"config.json implies {tuple(tensor.shape)}",
            )
    converted = {key: state[key].to(tensor.dtype) for key, tensor in expected.items()}
    model.load_state_dict(converted, strict=False, assign=True)


def save_checkpoint(
    model: torch.nn.Module, directory: str | Path, format: str | None = None
) -> Path:
    """Write a language model's config.json and model.safetensors; returns the directory."""
    config: MambaConfig = model.config
    state = model.state_dict()
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return write_checkpoint(config, state, directory, format)


def checkpoint_format(config: MambaConfig, format: str | None) -> str:
    """`format`, checked; None: "transformers" when transformers' Mamba can hold the model,
    else "state-spaces" (a compact model, or LayerNorm instead of RMSNorm)."""
    if format not in (None, *FORMATS):
        raise CheckpointError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    problem = _transformers_cannot_hold(config)
    if format == "transformers" and problem:
        raise CheckpointError(
            f"transformers' MambaForCausalLM cannot hold this model: {problem}; save it with "
            "format='state-spaces' (autohm reads it) or deploy the merged, full-width checkpoint"
        )
    return format or ("state-spaces" if problem else "transformers")


def _transformers_cannot_hold(config: MambaConfig) -> str | None:
    if config.is_compact:
        return "its layers have widths of their own (compaction) and x_proj may have a bias"
    if not config.rms_norm:
        return "it normalises with LayerNorm (transformers' Mamba has RMSNorm only)"
    return None


def transformers_config(config: MambaConfig) -> dict[str, Any]:
    """config.json in transformers' layout (model_type mamba); vocab_size is the padded one,
    as transformers' Mamba stores it."""
    fields = {hf: getattr(config, ours) for hf, ours in _HF_FIELDS.items()}
    return {
        "architectures": ["MambaForCausalLM"],
        "model_type": "mamba",
        **fields,
        "vocab_size": config.padded_vocab_size,
        "time_step_rank": config.resolved_dt_rank,
        "intermediate_size": config.d_inner,
        "hidden_act": "silu",
    }


def write_checkpoint(
    config: MambaConfig,
    state: dict[str, torch.Tensor],
    directory: str | Path,
    format: str | None = None,
) -> Path:
    """Write config.json and model.safetensors holding `state` (see checkpoint_format for
    `format`): transformers' layout (MambaForCausalLM.from_pretrained reads it), or the
    state-spaces one (mamba_ssm's; a compact model's per-layer widths and x_proj bias as the
    extra top-level fields layer_d_inner, layer_d_state, x_proj_bias); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    if checkpoint_format(config, format) == "transformers":
        write_text(directory / CONFIG_FILE, json.dumps(transformers_config(config), indent=2))
        renamed = {k.replace("backbone.embedding.", "backbone.embeddings."): v
                   for k, v in tensors.items()}  # fmt: skip
        write_tensors(directory / WEIGHT_FILES[0], renamed)
        return directory
    top = {k: v for k, v in config.to_dict().items() if k in _STATE_SPACES_TOP}
    for key in _COMPACT:
        if top[key] == getattr(MambaConfig, key):
            del top[key]  # a plain Mamba v1: the file stays readable by mamba_ssm
    if top["norm_epsilon"] == MambaConfig.norm_epsilon:
        del top["norm_epsilon"]  # mamba_ssm's config has no such field; 1e-5 is its default
    ssm_cfg = {k: v for k, v in config.to_dict().items() if k in _STATE_SPACES_SSM}
    write_text(directory / CONFIG_FILE, json.dumps({**top, "ssm_cfg": ssm_cfg}, indent=2) + "\n")
    write_tensors(directory / WEIGHT_FILES[0], tensors)
    return directory


def write_head(head: torch.nn.Linear, pooling: str, directory: str | Path) -> Path:
    """head.safetensors: a classifier's score.weight and score.bias, its pooling as metadata."""
    file = Path(directory) / HEAD_FILE
    tensors = {f"score.{k}": v.detach().contiguous() for k, v in head.state_dict().items()}
    write_tensors(file, tensors, {"pooling": pooling})
    return file


def read_head(directory: Path) -> tuple[dict[str, torch.Tensor], str | None] | None:
    """The saved head's tensors (score.weight, score.bias) and pooling (None in files written
    before it was recorded), or None when the checkpoint has no head."""
    file = directory / HEAD_FILE
    if not file.is_file():
        return None
    tensors = _load_weight_file(file)
    for key in ("score.weight", "score.bias"):
        if key not in tensors:
            raise _fail(file, f"missing tensor {key!r}")
    with safe_open(str(file), "pt") as handle:
        pooling = (handle.metadata() or {}).get("pooling")
    return tensors, pooling
