"""NIC captioning: model, search, one training step, the trainer (tiny), the CLI and its JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.models.nic import NIC
from dlcli.text.search import beam_search, greedy
from dlcli.text.vocab import Vocab

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy shared CPU two OpenMP threads spinning at
    every barrier make a 0.4 s test take 15 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(backbone="small", cnn_width=4, cnn_grid=2, embed_dim=16, hidden_dim=16)


def tiny_nic(vocab_size: int = 12, seed: int = 0) -> NIC:
    torch.manual_seed(seed)
    return NIC(vocab_size, **TINY).eval()


# --- model ---------------------------------------------------------------------------------------


def test_forward_predicts_one_step_per_input_token() -> None:
    model = tiny_nic()
    logits = model(torch.randn(2, 3, 32, 32), torch.randint(0, 12, (2, 7)))
    assert logits.shape == (2, 7, 12)


def test_resnet_encoder_takes_a_classifiers_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    """--encoder-weights resnet18.imagenet: the classifier's tensors (minus fc) land in the encoder."""
    import torchvision

    from dlcli.errors import WeightsError
    from dlcli.progress import NullReporter
    from dlcli.training import caption as trainer
    from dlcli.weights import loader

    model = NIC(10, embed_dim=8, hidden_dim=8, backbone="resnet18").eval()
    assert model.encode(torch.randn(1, 3, 64, 64)).shape == (1, 8)
    classifier = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        classifier.conv1.weight.fill_(0.125)
    asked: list[tuple[str, str]] = []

    def fake_load_model(name, *, task, **kw):
        asked.append((name, task))
        return loader.LoadedWeights(classifier, None, None, None, None)  # type: ignore[arg-type]

    monkeypatch.setattr(loader, "load_model", fake_load_model)
    trainer.load_encoder_weights(model, "resnet18.imagenet", True, NullReporter())
    assert asked == [("resnet18.imagenet", "classify")]
    assert torch.equal(model.cnn.conv1.weight, classifier.conv1.weight)
    with pytest.raises(WeightsError, match="does not fit"):
        trainer.load_encoder_weights(NIC(10, **TINY), "resnet18.imagenet", True, NullReporter())


def test_unknown_backbone_is_refused() -> None:
    with pytest.raises(ValueError):
        NIC(10, backbone="vgg99")


# --- search --------------------------------------------------------------------------------------


class ChainModel:
    """A decoder whose next-word distribution depends only on the last word (ids: 1 <start>,
    2 <end>, 3 'a', 4 'b'). Greedy takes 'a' (0.6) then <end> (0.4): p = 0.24; the better caption
    is 'b' (0.4) then <end> (0.95): p = 0.38."""

    def __init__(self) -> None:
        eps = 1e-6
        table = torch.full((5, 5), eps)
        table[1, 3], table[1, 4] = 0.6, 0.4  # after <start>
        table[3, 2], table[3, 3], table[3, 4] = 0.4, 0.3, 0.3  # after 'a'
        table[4, 2], table[4, 3] = 0.95, 0.05  # after 'b'
        table[2, 2] = 1.0
        self.log_table = (table / table.sum(1, keepdim=True)).log()

    def init_state(self, features: torch.Tensor):
        return (torch.zeros(1, features.shape[0], 1),)

    def step(self, tokens: torch.Tensor, state):
        return self.log_table[tokens], state


def test_beam_search_beats_greedy_on_a_known_chain() -> None:
    m, feats = ChainModel(), torch.zeros(1, 1)
    g = greedy(m, feats, start_id=1, end_id=2, max_length=5)[0]
    assert g.tokens == (3,) and g.log_prob == pytest.approx(math.log(0.24), abs=1e-4)
    beams = beam_search(m, feats[0], start_id=1, end_id=2, max_length=5, beam_size=2)
    assert beams[0].tokens == (4,) and beams[0].log_prob == pytest.approx(math.log(0.38), abs=1e-4)
    assert beams[1].tokens == (3,) and beams[0].finished and beams[1].finished
    one = beam_search(m, feats[0], start_id=1, end_id=2, max_length=5, beam_size=1)
    assert [c.tokens for c in one] == [g.tokens]


def test_beam_one_is_greedy_on_a_real_model() -> None:
    model = tiny_nic(seed=3)
    with torch.no_grad():
        feats = model.encode(torch.randn(6, 3, 32, 32))
    g = greedy(model, feats, start_id=1, end_id=2, max_length=10)
    for i in range(6):
        (b,) = beam_search(model, feats[i], start_id=1, end_id=2, max_length=10, beam_size=1)
        assert b.tokens == g[i].tokens
        assert b.log_prob == pytest.approx(g[i].log_prob, abs=1e-4)
        assert b.finished == g[i].finished


@pytest.mark.parametrize("max_length", [1, 3, 6])
@pytest.mark.parametrize("beam_size", [1, 3, 5])
def test_never_longer_than_max_length(max_length: int, beam_size: int) -> None:
    model = tiny_nic(seed=1)
    with torch.no_grad():
        # <end> made impossible: every caption runs into the limit
        model.head.bias[2] = -1e4
        feats = model.encode(torch.randn(2, 3, 32, 32))
    for c in greedy(model, feats, start_id=1, end_id=2, max_length=max_length):
        assert len(c.tokens) == max_length and not c.finished
    beams = beam_search(model, feats[0], start_id=1, end_id=2, max_length=max_length, beam_size=beam_size)
    assert len(beams) == beam_size
    assert all(len(c.tokens) <= max_length for c in beams)
    scores = [c.log_prob for c in beams]
    assert scores == sorted(scores, reverse=True)


# --- training --------------------------------------------------------------------------------------


def test_one_training_step_lowers_the_loss() -> None:
    from dlcli.data.scenes import CAPTION_WORDS, make_scene
    from dlcli.data.captions import normalize
    from dlcli.training.caption import encode_batch

    scenes = [make_scene(0, i, size=64) for i in range(4)]
    vocab = Vocab.build([" ".join(CAPTION_WORDS)])
    images = normalize(torch.stack([torch.from_numpy(s.image).permute(2, 0, 1) for s in scenes]))
    ids = encode_batch(vocab, [s.caption for s in scenes], 24)
    model = NIC(len(vocab), **TINY).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=vocab.pad_id)

    def loss() -> torch.Tensor:
        logits = model(images, ids[:, :-1])
        return loss_fn(logits.reshape(-1, len(vocab)), ids[:, 1:].reshape(-1))

    torch.manual_seed(0)
    before = loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss()
    assert float(after) < float(before.detach()) - 1e-3


def test_padding_is_not_part_of_the_loss() -> None:
    from dlcli.training.caption import encode_batch

    vocab = Vocab.build(["a red circle left of a blue square"])
    ids = encode_batch(vocab, ["a red circle", "a red circle left of a blue square"], 24)
    assert ids.shape == (2, 10) and (ids[0, 5:] == vocab.pad_id).all()
    assert encode_batch(vocab, ["a red circle left of"], 2).tolist()[0] == vocab.encode("a red")


def tiny_cfg(**kw):
    from dlcli.training.caption import CaptionTrainConfig

    base = dict(train_size=24, val_size=4, image_size=64, epochs=1, batch_size=8, cnn_width=4,
                embed_dim=16, hidden_dim=16, name="nic.tiny")
    base.update(kw)
    return CaptionTrainConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch tiny run: one epoch, then --resume with a budget of two."""
    from dlcli.device import Runtime
    from dlcli.progress import RecordingReporter
    from dlcli.training.caption import train_caption

    out = tmp_path_factory.mktemp("nic_run")
    rt = Runtime.create("cpu", seed=0)
    first = train_caption(tiny_cfg(), rt, out=out)
    assert [h.epoch for h in first.history] == [1]
    rep = RecordingReporter()
    second = train_caption(tiny_cfg(epochs=2), rt, out=out, reporter=rep, resume=True)
    assert [h.epoch for h in second.history] == [1, 2]
    assert any("resumed at epoch 1" in m for m in rep.messages)
    assert [r["epoch"] for r in rep.rows] == [2]
    return out


def test_training_writes_a_loadable_named_weights_file(trained: Path) -> None:
    from dlcli.data.scenes import CAPTION_WORDS
    from dlcli.tasks.caption import load_captioner

    for name in ("best.safetensors", "last.safetensors", "checkpoint.pt", "metrics.jsonl", "config.json", "run.json"):
        assert (trained / name).is_file(), name
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in rows] == [("train", 1), ("val", 1), ("train", 2), ("val", 2)]
    assert all(r["loss"] > 0 for r in rows if r["split"] == "train")
    assert all(0 <= r["bleu4"] <= 1 for r in rows if r["split"] == "val")
    assert json.loads((trained / "run.json").read_text())["state"] == "finished"
    cap = load_captioner(weights_file=trained / "best.safetensors")
    assert set(CAPTION_WORDS) <= set(cap.vocab.tokens)  # the vocabulary travels in the file
    assert cap.transform is not None and cap.max_length == 24
    assert 0.0 <= cap.loaded.meta["metrics"]["val_bleu4"] <= 1.0


def test_a_second_run_in_the_same_folder_is_refused(trained: Path) -> None:
    from dlcli.device import Runtime
    from dlcli.errors import InputError
    from dlcli.training.caption import train_caption

    with pytest.raises(InputError, match="--resume"):
        train_caption(tiny_cfg(), Runtime.create("cpu"), out=trained)


def test_coco_format_training(tmp_path: Path) -> None:
    from dlcli.data.scenes import make_scene
    from dlcli.device import Runtime
    from dlcli.training.caption import train_caption

    images = tmp_path / "images"
    images.mkdir()
    anns, imgs = [], []
    for i in range(6):
        scene = make_scene(5, i, size=64)
        Image.fromarray(scene.image).save(images / f"{i:012d}.jpg")
        imgs.append({"id": 100 + i, "file_name": f"{i:012d}.jpg"})
        anns += [{"id": 2 * i, "image_id": 100 + i, "caption": scene.caption.capitalize() + "."},
                 {"id": 2 * i + 1, "image_id": 100 + i, "caption": "A picture of shapes."}]
    (tmp_path / "captions.json").write_text(json.dumps({"images": imgs, "annotations": anns}))
    cfg = tiny_cfg(data="coco", captions_file=str(tmp_path / "captions.json"),
                   images_dir=str(images), val_fraction=0.34, batch_size=4)
    result = train_caption(cfg, Runtime.create("cpu", seed=0), out=tmp_path / "run")
    assert Path(result.weights).is_file() and result.metrics["val_images"] == 2


def test_malformed_coco_file_is_a_data_error(tmp_path: Path) -> None:
    from dlcli.errors import DataError
    from dlcli.data.captions import read_coco_captions

    (tmp_path / "c.json").write_text(json.dumps({"images": [{"id": 1}]}))
    with pytest.raises(DataError):
        read_coco_captions(tmp_path / "c.json", tmp_path)


# --- CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def scene_png(tmp_path: Path) -> Path:
    from dlcli.data.scenes import make_scene

    path = tmp_path / "scene.png"
    Image.fromarray(make_scene(2, 0, size=64).image).save(path)
    return path


def test_cli_json_has_every_beam_candidate(trained: Path, scene_png: Path) -> None:
    weights = trained / "best.safetensors"
    res = runner.invoke(app, ["caption", str(scene_png), str(scene_png), "--weights-file", str(weights),
                              "--beam-size", "4", "--max-length", "5", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["model"] == "nic.tiny" and data["beam_size"] == 4 and data["max_length"] == 5
    assert [i["index"] for i in data["images"]] == [0, 1] and data["failures"] == []
    for item in data["images"]:
        cands = item["candidates"]
        assert len(cands) == 4
        assert item["caption"] == cands[0]["caption"] and item["log_prob"] == cands[0]["log_prob"]
        assert [c["log_prob"] for c in cands] == sorted((c["log_prob"] for c in cands), reverse=True)
        for c in cands:
            assert set(c) == {"caption", "log_prob", "length", "finished"}
            assert c["log_prob"] <= 0 and c["length"] == len(c["caption"].split()) <= 5
    assert data["provenance"]["weights"] == "nic.tiny" and len(data["provenance"]["weights_sha256"]) == 64


def test_cli_table_and_partial_failure(trained: Path, scene_png: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    res = runner.invoke(app, ["caption", str(scene_png), str(bad), "--weights-file",
                              str(trained / "best.safetensors"), "--beam-size", "1", "--all"])
    assert res.exit_code == 7, res.output
    assert "nic.tiny · beam 1" in res.output and "not an image" in res.output
    assert "1 of 2 inputs failed" in res.output


@pytest.mark.parametrize("args", [["--beam-size", "0"], ["--max-length", "0"], ["--beam-size", "999"]])
def test_cli_bad_options_exit_2(trained: Path, scene_png: Path, args: list[str]) -> None:
    res = runner.invoke(app, ["caption", str(scene_png), "--weights-file", str(trained / "best.safetensors"), *args])
    assert res.exit_code == 2, res.output
    assert "Error" in res.output


def test_cli_train_needs_data_and_eval_reports_bleu(trained: Path) -> None:
    res = runner.invoke(app, ["caption", "train", "--out", str(trained / "x")])
    assert res.exit_code == 2 and "--data scenes" in res.output
    res = runner.invoke(app, ["caption", "eval", "--weights-file", str(trained / "best.safetensors"),
                              "--count", "6", "--beam-size", "2", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["images"] == 6 and set(data["bleu"]) == {"bleu1", "bleu2", "bleu3", "bleu4"}
    assert all(0.0 <= v <= 1.0 for v in data["bleu"].values())


# --- bundled weights -------------------------------------------------------------------------------


def _bundled() -> None:
    from dlcli.weights import registry

    if registry.lookup("nic.scenes") is None:
        pytest.skip("weights/nic.scenes is not in the manifest")


def test_bundled_weights_name_the_right_colours_and_shapes(tmp_path: Path) -> None:
    _bundled()
    from dlcli.data.scenes import TEST_SEED, make_scene

    paths, truths = [], []
    for i in range(4):
        scene = make_scene(TEST_SEED, 1000 + i)
        paths.append(tmp_path / f"s{i}.png")
        Image.fromarray(scene.image).save(paths[-1])
        truths.append({f"{o.color} {o.shape}" for o in scene.objects})
    res = runner.invoke(app, ["caption", *map(str, paths), "--offline", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["model"] == "nic.scenes"
    paired = 0
    for item, truth in zip(data["images"], truths):
        words = set(item["caption"].split())
        assert words & {t.split()[0] for t in truth}, (item["caption"], truth)  # a right colour
        assert words & {t.split()[1] for t in truth}, (item["caption"], truth)  # a right shape
        paired += any(t in item["caption"] for t in truth)
    assert paired >= 3, data["images"]  # and mostly as a right "colour shape" pair


@pytest.mark.parametrize("name, index", [("scene.png", 5), ("scene2.png", 2), ("scene3.png", 11)])
def test_bundled_weights_caption_the_sample_scenes(name: str, index: int) -> None:
    """samples/scene*.png are make_scene(2, index) (samples/README.md): the caption names at least one
    of the objects by its right colour and shape."""
    _bundled()
    from dlcli.data.scenes import make_scene

    sample = Path(__file__).resolve().parents[1] / "samples" / name
    if not sample.is_file():
        pytest.skip(f"samples/{name} is absent")
    truth = {f"{o.color} {o.shape}" for o in make_scene(2, index).objects}
    res = runner.invoke(app, ["caption", str(sample), "--offline", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    caption = json.loads(res.stdout)["images"][0]["caption"]
    assert any(t in caption for t in truth), (caption, truth)
