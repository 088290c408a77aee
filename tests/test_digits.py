"""Digits in `dl classify`: the "mnist" preset, the book's pickle importer (and its refusal of
anything but a dict of numpy arrays), the bundled deepconvnet.mnist entry."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from dlcli.errors import InputError, WeightsError

ROOT = Path(__file__).resolve().parents[1]


def drawn_seven(size: tuple[int, int] = (120, 90), offset: tuple[int, int] = (30, 10), light: bool = True) -> Image.Image:
    """A thick '7' drawn off-centre on a 120x90 canvas."""
    bg, ink = (235, 20) if light else (10, 250)
    img = Image.new("L", size, bg)
    d = ImageDraw.Draw(img)
    x, y = offset
    d.line([(x, y), (x + 40, y)], fill=ink, width=7)
    d.line([(x + 40, y), (x + 15, y + 60)], fill=ink, width=7)
    return img


# --- the preset ---------------------------------------------------------------------------------


@pytest.mark.parametrize("light", [True, False])
def test_mnist_style_crops_fits_and_centres(light: bool) -> None:
    from dlcli.tasks.digits import mnist_style

    out = np.asarray(mnist_style(drawn_seven(light=light)), dtype=np.float64)
    assert out.shape == (28, 28)
    assert out.max() > 200 and out[0].max() == 0 and out[:, 0].max() == 0  # white ink on black, margins empty
    ys, xs = np.nonzero(out > 20)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 in (19, 20, 21)  # the longer side fits 20
    total = out.sum()
    cy = (np.indices(out.shape)[0] * out).sum() / total
    cx = (np.indices(out.shape)[1] * out).sum() / total
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0  # centre of mass in the middle


def test_mnist_style_same_digit_anywhere_gives_same_input() -> None:
    from dlcli.tasks.digits import mnist_style

    a = np.asarray(mnist_style(drawn_seven(offset=(10, 5))), dtype=np.int16)
    b = np.asarray(mnist_style(drawn_seven(offset=(60, 20))), dtype=np.int16)
    assert np.abs(a - b).max() <= 2


def test_mnist_style_rgba_drawing_and_blank_image() -> None:
    from dlcli.tasks.digits import mnist_style

    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).line([(32, 8), (32, 56)], fill=(0, 0, 0, 255), width=6)  # a black '1' on transparency
    out = np.asarray(mnist_style(rgba))
    assert out.max() > 200 and out[:, :8].max() == 0
    with pytest.raises(InputError, match="no digit"):
        mnist_style(Image.new("L", (50, 50), 128))


def test_preset_registered_and_gives_tensor() -> None:
    from dlcli.weights.presets import get_preset
    from dlcli.weights.registry import get

    preset = get_preset("mnist")
    assert preset.mode == "L"
    spec = get("deepconvnet.mnist")
    assert spec.preprocess == "mnist"
    t = preset.factory(spec, {})(drawn_seven())
    assert t.shape == (1, 28, 28) and t.dtype == torch.float32 and 0.0 <= float(t.min()) and float(t.max()) <= 1.0


def test_bundled_entry_classifies_a_drawn_seven() -> None:
    from dlcli.weights.presets import transform_for
    from dlcli.weights import loader, registry

    spec = registry.get("deepconvnet.mnist")
    assert spec.task == "classify" and spec.extra.get("default") is False
    assert registry.default_for("classify").name != "deepconvnet.mnist"  # the classify default stays ImageNet
    assert spec.metrics["test_accuracy"] >= 0.99
    lw = loader.load_model("deepconvnet.mnist", task="classify", offline=True)
    tf, _ = transform_for(spec)
    with torch.no_grad():
        pred = lw.model(tf(drawn_seven()).unsqueeze(0)).argmax(1).item()
    assert lw.labels is not None and lw.labels[pred] == "7"


def test_dl_classify_reads_the_digit_samples(tmp_path: Path) -> None:
    """`dl classify samples/digits --model deepconvnet.mnist` goes through the "mnist" preset."""
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    files = sorted((ROOT / "samples" / "digits").glob("*.png"))
    assert len(files) >= 5
    seen = tmp_path / "seen.png"
    r = CliRunner().invoke(app, ["classify", *map(str, files), "--model", "deepconvnet.mnist", "--top-k", "1",
                                 "--json", "--offline", "--show-preprocessed", str(seen)])
    assert r.exit_code == 0, r.output
    images = json.loads(r.stdout)["images"]
    pred = [im["predictions"][0]["label"] for im in images]
    truth = [f.name.split("_")[1] for f in files]  # digit_<d>_<how>.png
    assert sum(p == t for p, t in zip(pred, truth)) >= len(files) - 1, list(zip(truth, pred))
    assert Image.open(seen).size[1] >= 28


# --- the book's pickle --------------------------------------------------------------------------


def fake_book_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(16, 1, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3), (64, 64, 3, 3),
              (1024, 50), (50, 10)]
    p: dict[str, np.ndarray] = {}
    for i, s in enumerate(shapes, start=1):
        p[f"W{i}"] = rng.normal(0, np.sqrt(2 / np.prod(s[1:] if len(s) == 4 else s[:1])), s)
        p[f"b{i}"] = rng.normal(0, 0.1, s[0] if len(s) == 4 else s[1])
    return p


def book_forward(p: dict[str, np.ndarray], x: torch.Tensor) -> torch.Tensor:
    """The book's DeepConvNet.predict(train_flg=False) in float64: ReLU after each conv and the
    first affine layer; dropout layers multiply by (1 - 0.5) at test time."""
    import torch.nn.functional as F

    h = x.double()
    pads = [1, 1, 1, 2, 1, 1]
    for i in range(6):
        h = F.relu(F.conv2d(h, torch.from_numpy(p[f"W{i + 1}"]), torch.from_numpy(p[f"b{i + 1}"]), padding=pads[i]))
        if i % 2 == 1:
            h = F.max_pool2d(h, 2)
    h = h.reshape(h.shape[0], -1)
    h = F.relu(h @ torch.from_numpy(p["W7"]) + torch.from_numpy(p["b7"])) * 0.5
    return (h @ torch.from_numpy(p["W8"]) + torch.from_numpy(p["b8"])) * 0.5


def test_book_conversion_matches_book_logits() -> None:
    from dlcli.models.deepconvnet import DeepConvNet
    from dlcli.tasks.digits import book_to_state_dict

    p = fake_book_params()
    m = DeepConvNet().double().eval()
    m.load_state_dict({k: v.double() for k, v in book_to_state_dict(p).items()})
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        ours = m(x.double())
    assert torch.allclose(ours, book_forward(p, x), atol=1e-4)  # float32 storage of the weights


def test_book_pickle_roundtrip_and_refusals(tmp_path: Path) -> None:
    from dlcli.tasks.digits import import_book_pickle, read_book_pickle

    good = tmp_path / "params.pkl"
    good.write_bytes(pickle.dumps(fake_book_params(), protocol=2))
    assert set(read_book_pickle(good)) == {f"{p}{i}" for i in range(1, 9) for p in "Wb"}
    assert import_book_pickle(good)["classifier.4.weight"].shape == (10, 50)

    # A pickle that would run a command when loaded: refused before anything is called.
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            import os

            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"W1": Evil()}))
    with pytest.raises(WeightsError, match="refusing.*system"):
        read_book_pickle(evil)
    assert not marker.exists()

    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps({"W1": np.zeros(3)}))
    with pytest.raises(WeightsError, match="missing"):
        read_book_pickle(wrong)
    lst = tmp_path / "list.pkl"
    lst.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(WeightsError, match="not the book's dict"):
        read_book_pickle(lst)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(WeightsError, match="not a readable pickle"):
        read_book_pickle(junk)
    shapes = fake_book_params()
    shapes["W7"] = np.zeros((50, 1024))  # not transposed the book's way
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(shapes))
    with pytest.raises(WeightsError, match="do not fit"):
        import_book_pickle(bad)


def test_weights_import_cli_on_the_books_pickle_scores_65_errors(tmp_path: Path) -> None:
    from conftest import shared_data
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    pkl = shared_data("book", "deep_convnet_params.pkl")
    raw = shared_data("MNIST", "raw")
    runner = CliRunner()
    r = runner.invoke(app, ["weights", "import", "deepconvnet.book", str(pkl), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["preprocess"] == "mnist"
    r = runner.invoke(app, ["train-mnist", "--evaluate", "--model", "deepconvnet.book", "--data", str(raw), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert (res["errors"], res["n"]) == (65, 10000) and res["accuracy"] == pytest.approx(0.9935)


def test_weights_import_cli_refuses_malicious_pickle(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'echo hacked'\ntR.")  # protocol-0 pickle calling os.system
    r = CliRunner().invoke(app, ["weights", "import", "deepconvnet.evil", str(evil)])
    assert r.exit_code == 3 and "refusing" in r.output and "hacked" not in r.output
