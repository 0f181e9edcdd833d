"""Bad checkpoints give one clear CheckpointError naming the file and the key."""

import json
import subprocess
import sys

import pytest
import torch
from helpers import tiny_config
from safetensors.torch import load_file, save_file

from autohm.errors import CheckpointError
from autohm.model import MambaLM


@pytest.fixture
def saved(tmp_path):
    return MambaLM(tiny_config()).save_pretrained(tmp_path / "ckpt", format="state-spaces")


def edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def load_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        MambaLM.from_pretrained(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_wrong_path(tmp_path):
    assert "checkpoint directory not found" in load_error(tmp_path / "missing")


def test_a_file_instead_of_a_directory(saved):
    assert "is a file" in load_error(saved / "config.json")


def test_missing_config(saved):
    (saved / "config.json").unlink()
    assert "no config.json" in load_error(saved)


def test_invalid_json(saved):
    (saved / "config.json").write_text("{not json")
    assert "config.json: not valid JSON" in load_error(saved)


def test_unknown_config_field(saved):
    edit_config(saved, d_modle=16)
    assert load_error(saved).endswith("config.json: unknown config field 'd_modle'")


def test_unknown_ssm_cfg_field(saved):
    config = json.loads((saved / "config.json").read_text())
    config["ssm_cfg"]["d_stat"] = 4
    (saved / "config.json").write_text(json.dumps(config))
    assert "unknown config field 'ssm_cfg.d_stat'" in load_error(saved)


def test_unknown_transformers_field(tmp_path):
    directory = tmp_path / "hf"
    directory.mkdir()
    (directory / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 16,
                "num_hidden_layers": 1,
                "vocab_size": 8,
                "model_type": "mamba",
                "state_sise": 4,
            }
        )
    )
    assert "unknown config field 'state_sise'" in load_error(directory)


def test_unsupported_architectures(saved, tmp_path):
    edit_config(saved, ssm_cfg={"layer": "Mamba2"})
    assert "'Mamba2' is not supported" in load_error(saved)
    directory = tmp_path / "hf2"
    directory.mkdir()
    (directory / "config.json").write_text(
        json.dumps(
            {"hidden_size": 16, "num_hidden_layers": 1, "vocab_size": 8, "model_type": "mamba2"}
        )
    )
    assert "model_type 'mamba2' is not supported" in load_error(directory)


def test_bad_config_value(saved):
    edit_config(saved, d_model="sixteen")
    assert "d_model must be a positive integer" in load_error(saved)


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    assert "no weights: expected one of model.safetensors, pytorch_model.bin" in load_error(saved)


def test_shape_mismatch_names_the_tensor(saved):
    edit_config(
        saved, ssm_cfg={**json.loads((saved / "config.json").read_text())["ssm_cfg"], "d_state": 8}
    )
    message = load_error(saved)
    assert "model.safetensors: tensor 'backbone.layers.0.mixer.A_log' has shape (32, 4)" in message


def test_missing_and_unexpected_tensors(saved):
    state = load_file(saved / "model.safetensors")
    del state["backbone.norm_f.weight"]
    save_file(state, saved / "model.safetensors")
    assert "missing tensor 'backbone.norm_f.weight'" in load_error(saved)
    state["backbone.norm_f.weight"] = torch.ones(16)
    state["backbone.extra"] = torch.ones(1)
    save_file(state, saved / "model.safetensors")
    assert "unexpected tensor 'backbone.extra'" in load_error(saved)


def test_corrupt_safetensors(saved):
    (saved / "model.safetensors").write_bytes(b"garbage")
    assert "model.safetensors: cannot read weights" in load_error(saved)


class NotATensor:
    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def test_pickled_objects_are_refused(saved):
    (saved / "model.safetensors").unlink()
    torch.save({"x": NotATensor()}, saved / "pytorch_model.bin")
    assert "pytorch_model.bin: cannot read weights safely" in load_error(saved)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autohm", "info", "--model", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: checkpoint directory not found: {tmp_path / 'missing'}"
    ]
