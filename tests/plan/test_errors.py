"""Bad input gets a clear error naming the file, line and field (or the flag), and the CLI exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coldaisle.errors import ConfigError
from coldaisle.plan import load_architecture, load_site, plan_memory

# Meta's Llama-2-7b-hf config.json as published (https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json)
LLAMA2_7B = {
    "_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": None, "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.31.0.dev0",
    "use_cache": True, "vocab_size": 32000,
}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    return subprocess.run([sys.executable, "-m", "coldaisle.cli", "plan", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def write_config(tmp_path: Path, data: dict[str, object]) -> Path:
    d = tmp_path / "my-model"
    d.mkdir(exist_ok=True)
    p = d / "config.json"
    p.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return p


def test_a_real_config_json_plans_like_the_catalog_entry(tmp_path: Path) -> None:
    path = write_config(tmp_path, LLAMA2_7B)
    mine = plan_memory(model=str(path), context=4096, answers=False)
    ours = plan_memory(model="llama-2-7b", context=4096, answers=False)
    assert mine.total_bytes == pytest.approx(ours.total_bytes)
    assert mine.model_source == str(path)


def test_config_json_missing_a_field_names_file_line_and_key(tmp_path: Path) -> None:
    data = {k: v for k, v in LLAMA2_7B.items() if k != "num_hidden_layers"}
    path = write_config(tmp_path, data)
    with pytest.raises(ConfigError) as exc:
        load_architecture(str(path))
    assert exc.value.file == str(path) and exc.value.field == "num_hidden_layers"
    assert "missing" in exc.value.message
    proc = cli("--model", str(path), cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{path}" in proc.stderr and "num_hidden_layers" in proc.stderr


def test_config_json_with_a_wrong_value_points_at_its_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, {**LLAMA2_7B, "num_key_value_heads": 5})
    with pytest.raises(ConfigError) as exc:
        load_architecture(str(path))
    lines = path.read_text().splitlines()
    assert exc.value.line is not None and '"num_key_value_heads": 5' in lines[exc.value.line - 1]
    path.write_text('{"hidden_size": 4096,\n "num_hidden_layers": }', encoding="utf-8")
    with pytest.raises(ConfigError) as bad:
        load_architecture(str(path))
    assert bad.value.line == 2 and "not valid JSON" in bad.value.message


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"model": "llama-2-7b", "tp": 3}, "tp", "does not divide the 32 attention heads"),
    ({"model": "llama-2-7b", "pp": 33}, "pp", "more pipeline stages than"),
    ({"model": "llama-2-7b", "ep": 2}, "ep", "no experts"),
    ({"model": "mixtral-8x7b", "ep": 3, "gpus": 3}, "ep", "does not divide"),
    ({"model": "llama-2-7b", "tp": 2, "gpus": 3}, "gpus", "do not divide"),
    ({"model": "llama-2-7b", "zero": 3}, "zero", "inference"),
    ({"model": "llama-2-7b", "mode": "training", "dtype": "int4"}, "dtype", "not modelled"),
])
def test_impossible_layouts_are_refused_naming_the_field(kwargs: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        plan_memory(answers=False, **kwargs)
    assert exc.value.field == field and words in exc.value.message


def test_unknown_names_get_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        plan_memory(model="llama-2-7b", gpu="h100-pcie-80g", answers=False)
    assert "h100-pcie-80gb" in exc.value.hint
    with pytest.raises(ConfigError) as model:
        load_architecture("lama-2-7b")
    assert "llama-2-7b" in model.value.hint


@pytest.mark.parametrize(("args", "flag"), [
    (["--batch", "-1"], "--batch"), (["--context", "1000000000"], "--context"), (["--tp", "0"], "--tp"),
    (["--gpu", "h100-pcie"], "did you mean"), (["--tp", "3"], "tp 3"), (["--pp", "500"], "pp 500"),
    (["--cuda-context", "1"], "--cuda-context"), (["--dtype", "int3"], "--dtype"),
])
def test_cli_bad_input_exits_2_with_one_clear_error(tmp_path: Path, args: list[str], flag: str) -> None:
    proc = cli("--model", "llama-2-7b", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("Error:") and flag in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_bad_site_file_names_file_line_and_field(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("name: hall-b\ntopology: {rows: 2}\nrack_pdu: 40 kW\nrow_cooling: 80\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_site(site)
    assert exc.value.file == str(site) and exc.value.line == 4 and exc.value.field == "row_cooling"
    proc = cli("--model", "llama-2-7b", "--site", str(site), cwd=tmp_path)
    assert proc.returncode == 2 and f"{site}:4: row_cooling" in proc.stderr
