"""The shipped accelerate configs parse and say what they claim; each rank loads onto its own GPU."""

from __future__ import annotations

import pytest
import yaml

from honed.train.distributed import config_path, device_map, is_main_process

pytestmark = pytest.mark.unit


def test_fsdp_config_follows_peft_guide() -> None:
    cfg = yaml.safe_load(config_path("fsdp").read_text())
    assert cfg["distributed_type"] == "FSDP"
    fsdp = cfg["fsdp_config"]
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_use_orig_params"] is False  # frozen base and trainable LoRA in separate flat params
    assert fsdp["fsdp_cpu_ram_efficient_loading"] is True and fsdp["fsdp_sync_module_states"] is True


def test_ddp_config() -> None:
    assert yaml.safe_load(config_path("ddp").read_text())["distributed_type"] == "MULTI_GPU"
    with pytest.raises(ValueError, match="fsdp, ddp"):
        config_path("deepspeed")


def test_device_map_per_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert device_map(cuda=False) is None
    assert device_map(cuda=True) == "auto"
    assert is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("RANK", "3")
    assert device_map(cuda=True) == {"": 3}  # a whole copy on its own GPU, not spread over all of them
    assert not is_main_process()
