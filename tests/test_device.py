import pytest
import torch

from dlcli import device
from dlcli.device import Runtime, resolve_device, resolve_precision
from dlcli.errors import DeviceError, InputError


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(device, "_mps_available", lambda: False)


def test_auto_is_cpu_without_accelerators(no_accelerators):
    assert resolve_device("auto") == torch.device("cpu")
    assert device.available_devices() == ["cpu"]


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(device, "_mps_available", lambda: True)
    assert device.available_devices() == ["cuda:0", "cuda:1", "mps", "cpu"]
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("mps")


def test_missing_device_lists_the_ones_there(no_accelerators):
    with pytest.raises(DeviceError, match=r"'cuda:1' is not available \(this machine has: cpu\)"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceError, match="mps"):
        resolve_device("mps")
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_fp16_on_cpu_falls_back_to_bf16_with_a_notice():
    dtype, notice = resolve_precision("fp16", torch.device("cpu"))
    assert dtype == torch.bfloat16
    assert "fp16 is not supported on cpu; using bf16" in notice


def test_fp16_falls_back_to_fp32_without_bf16(monkeypatch):
    monkeypatch.setattr(device, "bf16_supported", lambda d: False)
    dtype, notice = resolve_precision("fp16", torch.device("cpu"))
    assert dtype == torch.float32 and "fp32" in notice
    dtype, notice = resolve_precision("bf16", torch.device("cpu"))
    assert dtype == torch.float32 and "bf16 is not supported" in notice


def test_unknown_precision_is_input_error():
    with pytest.raises(InputError, match="use one of auto, fp32, fp16, bf16"):
        resolve_precision("fp8", torch.device("cpu"))


def test_runtime_reports_what_it_used_and_runs_autocast():
    rt = Runtime.create("cpu", "fp16", seed=3)
    assert rt.describe()["device"] == "cpu" and rt.describe()["dtype"] == "bfloat16"
    assert rt.notices and "bf16" in rt.notices[0]
    model = rt.place(torch.nn.Linear(4, 2))
    with rt.inference():
        out = model(rt.to(torch.randn(3, 4)))
    assert out.dtype == torch.bfloat16 and out.shape == (3, 2)


def test_seed_makes_runs_repeatable():
    Runtime.create("cpu", seed=7)
    a = torch.randn(5)
    Runtime.create("cpu", seed=7, deterministic=True)
    b = torch.randn(5)
    torch.use_deterministic_algorithms(False)
    assert torch.equal(a, b)
