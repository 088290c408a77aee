"""DCGAN models and trainer: shapes, one training step, checkpoints and resume (tiny, CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dlcli.models.dcgan import Discriminator, Generator
from dlcli.training import dcgan as trainer

SHARED = Path(__file__).parents[1].parent / "shared" / "data"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 1), (32, 3), (64, 3), (64, 1)])
def test_generator_and_discriminator_shapes(size: int, channels: int) -> None:
    g = Generator(latent_dim=16, channels=channels, image_size=size, width=8)
    d = Discriminator(channels=channels, image_size=size, width=8)
    x = g(torch.randn(3, 16))
    assert x.shape == (3, channels, size, size)
    assert float(x.detach().min()) >= -1.0 and float(x.detach().max()) <= 1.0  # tanh output
    assert d(x).shape == (3,)


def test_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="image_size"):
        Generator(image_size=48)


def test_one_step_changes_both_nets_with_finite_losses() -> None:
    torch.manual_seed(0)
    g, d = Generator(16, 1, 28, 8), Discriminator(1, 28, 8)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    before_g = [p.detach().clone() for p in g.parameters()]
    before_d = [p.detach().clone() for p in d.parameters()]
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    m = trainer.train_step(g, d, opt_g, opt_d, real, 16, 0.9)
    assert all(torch.isfinite(torch.tensor(v)) for v in m.values())
    assert any(not torch.equal(a, b) for a, b in zip(before_g, g.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, d.parameters()))


def _image_folder(tmp_path: Path, n: int = 12) -> Path:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        arr = (torch.rand(40, 50, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"{i}.png")
    return folder


def test_train_on_folder_writes_weights_that_generate_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DL_HOME", str(tmp_path / "home"))
    folder = _image_folder(tmp_path)
    cfg = trainer.DCGANConfig(data=str(folder), epochs=1, batch_size=4, image_size=32, width=8, latent_dim=8,
                              name="dcgan.test")
    res = trainer.train_dcgan(cfg, tmp_path / "run")
    assert res.steps == 3 and res.epochs_done == 1
    assert (tmp_path / "run" / "samples" / "epoch_001.png").is_file()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"], r["step"]) for r in rows] == [("train", 1, 3)]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "lr"} <= set(rows[0])
    assert json.loads((tmp_path / "run" / "run.json").read_text())["state"] == "finished"
    assert res.weights_file == tmp_path / "run" / "last.safetensors"

    from dlcli.device import Runtime
    from dlcli.tasks.generate import generate

    rt = Runtime.create("cpu")
    out = tmp_path / "grid.png"
    r = generate(runtime=rt, weights_file=res.weights_file, n=4, seed=3, out=out)
    from PIL import Image

    assert r.files == [out] and Image.open(out).size[0] > 32


def test_resume_continues_where_it_stopped(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path, 16)
    cfg = trainer.DCGANConfig(data=str(folder), epochs=2, batch_size=4, image_size=32, width=8, latent_dim=8,
                              checkpoint_every=100)
    first = trainer.train_dcgan(cfg, tmp_path / "run", max_steps=2)
    assert first.steps == 2
    again = trainer.load_run_config(tmp_path / "run")
    assert again.image_size == 32 and again.epochs == 2
    assert json.loads((tmp_path / "run" / "run.json").read_text())["state"] == "interrupted"
    with pytest.raises(Exception, match="--resume"):  # a new run there is refused
        trainer.train_dcgan(cfg, tmp_path / "run")
    rest = trainer.train_dcgan(again, tmp_path / "run", resume=True)
    assert rest.resumed_from == 2 and rest.steps == 8 and rest.epochs_done == 2
    # A resumed run must describe the same models.
    with pytest.raises(Exception, match="width"):
        trainer.train_dcgan(trainer.DCGANConfig(data=str(folder), width=16, image_size=32, latent_dim=8),
                            tmp_path / "run",
                            resume=True)


def test_mnist_data_is_read_when_present() -> None:
    if not (SHARED / "MNIST" / "raw").is_dir():
        pytest.skip(reason="../shared/data/MNIST is absent")
    x, y = trainer.load_training_data(trainer.DCGANConfig(data_dir=str(SHARED), limit=5, image_size=32))
    assert x.shape == (5, 1, 32, 32) and x.dtype == torch.uint8 and int(x.max()) > 200
    assert y.shape == (5,) and y.dtype == torch.int64 and int(y.max()) <= 9


def test_weight_average_is_saved_with_recalibrated_batch_norm(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path, 8)
    base = dict(data=str(folder), epochs=1, batch_size=4, image_size=32, width=8, latent_dim=8)
    plain = trainer.train_dcgan(trainer.DCGANConfig(**base, ema=0.0), tmp_path / "plain")
    avg = trainer.train_dcgan(trainer.DCGANConfig(**base, ema=0.5), tmp_path / "avg")
    from safetensors.torch import load_file

    a, b = load_file(plain.weights_file), load_file(avg.weights_file)
    assert a.keys() == b.keys()
    assert not torch.equal(a["net.0.weight"], b["net.0.weight"])  # same seed, same steps: only the average differs
    g = Generator(8, 3, 32, 8)
    trainer.recalibrate_bn(g, 8, batches=2, batch_size=16)
    assert int(g.net[1].num_batches_tracked) == 2 and g.net[1].momentum == 0.1


def test_spectral_discriminator_has_no_batch_norm_and_bounded_convs() -> None:
    torch.manual_seed(0)
    d = Discriminator(1, 28, 8, norm="spectral")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    d(torch.randn(4, 1, 28, 28))  # one power iteration per forward in train mode
    d.eval()
    for m in d.modules():
        if isinstance(m, torch.nn.Conv2d):
            sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
            assert float(sigma) < 1.5  # the power-iteration estimate keeps it near 1
    with pytest.raises(ValueError, match="norm"):
        Discriminator(1, 28, 8, norm="layer")


def test_hinge_step_on_spectral_d_lowers_d_loss_over_steps() -> None:
    torch.manual_seed(0)
    g, d = Generator(16, 1, 28, 8), Discriminator(1, 28, 8, norm="spectral")
    opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), 4e-3, betas=(0.0, 0.9))
    real = torch.rand(16, 1, 28, 28) * 2 - 1
    losses = [trainer.train_step(g, d, opt_g, opt_d, real, 16, loss="hinge")["loss_d"] for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_linear_schedule_ends_near_zero_and_options_are_recorded(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path, 16)
    cfg = trainer.DCGANConfig(data=str(folder), epochs=2, batch_size=4, image_size=32, width=8, latent_dim=8,
                              lr=1e-3, lr_d=4e-3, lr_schedule="linear", loss="hinge", d_norm="spectral")
    res = trainer.train_dcgan(cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    # The last of 8 steps ran at 1/8 of the base rates.
    assert state["optimizer"]["g"]["param_groups"][0]["lr"] == pytest.approx(1e-3 / 8)
    assert state["optimizer"]["d"]["param_groups"][0]["lr"] == pytest.approx(4e-3 / 8)
    from dlcli.weights.store import read_state_dict

    _, meta = read_state_dict(res.weights_file)
    assert "--loss hinge" in json.dumps(meta) and "--lr-d 0.004" in json.dumps(meta)


def test_bad_loss_and_schedule_are_input_errors(tmp_path: Path) -> None:
    from dlcli.errors import InputError

    folder = _image_folder(tmp_path, 4)
    for bad in ({"loss": "wasserstein"}, {"lr_schedule": "cosine"}, {"d_norm": "layer"}, {"upsample": "bilinear"},
                {"augment": "cutout"}):
        with pytest.raises(InputError, match="must be one of"):
            trainer.train_dcgan(trainer.DCGANConfig(data=str(folder), image_size=32, width=8, **bad), tmp_path / "r")


def test_init_from_starts_g_from_registered_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DL_HOME", str(tmp_path / "home"))
    folder = _image_folder(tmp_path, 8)
    from dlcli import catalog
    from dlcli.weights import registry

    catalog.load()
    bundled_cfg = registry.lookup("dcgan.mnist").config  # the run must build the bundled generator's shape
    cfg = trainer.DCGANConfig(data=str(folder), epochs=1, batch_size=4, image_size=28, channels=1,
                              width=bundled_cfg["width"], upsample=bundled_cfg.get("upsample", "transposed"),
                              latent_dim=100, init_from="dcgan.mnist", lr=0.0, offline=True)
    res = trainer.train_dcgan(cfg, tmp_path / "run", max_steps=1)
    from dlcli.weights import loader

    bundled = loader.load_model("dcgan.mnist", task="generate", offline=True).model.state_dict()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    # lr 0: G's weights are still the bundled ones after the step.
    assert torch.equal(state["g.net.0.weight"], bundled["net.0.weight"])
    assert res.steps == 1
    from dlcli.errors import InputError

    with pytest.raises(InputError, match="init-from"):
        trainer.train_dcgan(trainer.DCGANConfig(data=str(folder), image_size=28, channels=1, width=8,
                                                init_from="dcgan.mnist", offline=True), tmp_path / "r2")


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_resize_generator_has_no_transposed_convs(size: int, channels: int) -> None:
    g = Generator(latent_dim=16, channels=channels, image_size=size, width=8, upsample="resize")
    assert g(torch.randn(2, 16)).shape == (2, channels, size, size)
    # Only the projection from the 1x1 latent is transposed (it has no overlap, so no checkerboard).
    transposed = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(transposed) == 1 and transposed[0].stride == (1, 1)
    with pytest.raises(ValueError, match="upsample"):
        Generator(upsample="bilinear")


def test_translate_shifts_each_image_by_whole_pixels_within_the_bound_and_passes_gradients() -> None:
    from dlcli.training.gan_augment import translate

    torch.manual_seed(0)
    x = torch.full((64, 1, 28, 28), -1.0)
    x[:, :, 14, 14] = 1.0  # one bright pixel per image, on a black background
    x.requires_grad_(True)
    y = translate(x, 3)
    assert y.shape == x.shape
    pos = (y.detach() == 1.0).flatten(1).float().argmax(1)
    dy, dx = pos // 28 - 14, pos % 28 - 14
    assert int(dy.abs().max()) <= 3 and int(dx.abs().max()) <= 3
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 10  # each image gets its own shift
    assert torch.equal((y.detach() == 1.0).flatten(1).sum(1), torch.ones(64, dtype=torch.long))
    assert float(y.detach().min()) == -1.0  # the border repeats the background, nothing new appears
    y.sum().backward()
    assert torch.equal(x.grad.flatten(1).sum(1), torch.full((64,), 784.0))  # every output pixel came from one input


def test_augmented_training_keeps_checkpoint_keys_and_records_the_recipe(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path, 8)
    cfg = trainer.DCGANConfig(data=str(folder), epochs=1, batch_size=4, image_size=32, width=8, latent_dim=8,
                              upsample="resize", augment="translate")
    res = trainer.train_dcgan(cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    plain = Discriminator(3, 32, 8).state_dict()
    assert {k[2:] for k in state if k.startswith("d.")} == set(plain)  # the augmentation owns no weights
    from dlcli.weights.store import read_state_dict

    _, meta = read_state_dict(res.weights_file)
    assert meta["config"]["upsample"] == "resize"
    assert "--upsample resize --augment translate" in meta["recipe"]
    # The weights rebuild as a resize generator: `dl generate --weights-file` samples from them.
    from dlcli.device import Runtime
    from dlcli.tasks.generate import generate

    r = generate(runtime=Runtime.create("cpu"), weights_file=res.weights_file, n=4, seed=0, out=tmp_path / "g.png")
    assert r.files == [tmp_path / "g.png"]
    with pytest.raises(Exception, match="upsample"):  # a resumed run must keep its generator's up-steps
        trainer.train_dcgan(trainer.DCGANConfig(**{**cfg.__dict__, "upsample": "transposed", "epochs": 2}),
                            tmp_path / "run", resume=True)


def test_class_entropy_terms_reward_confident_samples_that_use_every_class() -> None:
    confident = torch.eye(10) * 50  # each sample sure of its own class, all ten classes used
    per_sample, batch = trainer.class_entropy_terms(confident)
    assert float(per_sample) < 1e-6 and float(batch) == pytest.approx(math.log(10), abs=1e-5)
    unsure = torch.zeros(10, 10)
    per_sample, batch = trainer.class_entropy_terms(unsure)
    assert float(per_sample) == pytest.approx(math.log(10), abs=1e-5)
    collapsed = torch.zeros(10, 10)
    collapsed[:, 3] = 50  # confident, but every sample the same class
    assert float(trainer.class_entropy_terms(collapsed)[1]) < 1e-6


def test_class_head_learns_real_labels_and_g_gets_the_entropy_loss() -> None:
    torch.manual_seed(0)
    g, d = Generator(16, 1, 28, 8), Discriminator(1, 28, 8, classes=10)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-3, betas=(0.5, 0.999))
    real = torch.rand(20, 1, 28, 28) * 2 - 1
    labels = torch.arange(20) % 10
    aux_before = d.aux.weight.detach().clone()
    steps = [trainer.train_step(g, d, opt_g, opt_d, real, 16, 0.9, labels=labels, class_entropy=1.0)
             for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(v)) for m in steps for v in m.values())
    assert {"class_loss", "fake_entropy", "batch_entropy"} <= set(steps[0])
    assert steps[-1]["class_loss"] < steps[0]["class_loss"]  # D's class head learns the labels
    assert not torch.equal(aux_before, d.aux.weight)
    with pytest.raises(ValueError, match="class head"):
        Discriminator(1, 28, 8).forward_both(real)


def test_class_entropy_needs_labelled_data(tmp_path: Path) -> None:
    from dlcli.errors import InputError

    folder = _image_folder(tmp_path, 4)
    with pytest.raises(InputError, match="class-entropy"):
        trainer.train_dcgan(trainer.DCGANConfig(data=str(folder), image_size=32, width=8, class_entropy=1.0),
                            tmp_path / "r")


def test_class_entropy_run_on_mnist_checkpoints_the_class_head(tmp_path: Path) -> None:
    if not (SHARED / "MNIST" / "raw").is_dir():
        pytest.skip(reason="../shared/data/MNIST is absent")
    cfg = trainer.DCGANConfig(data_dir=str(SHARED), limit=64, epochs=2, batch_size=16, width=8, latent_dim=8,
                              upsample="resize", augment="translate", class_entropy=1.0)
    res = trainer.train_dcgan(cfg, tmp_path / "run", max_steps=3)
    assert res.steps == 3  # of 4 in the first epoch
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert state["d.aux.weight"].shape[0] == 10
    with pytest.raises(Exception, match="class_entropy"):  # D's shape depends on it: a resume keeps it
        trainer.train_dcgan(trainer.DCGANConfig(**{**cfg.__dict__, "class_entropy": 0.0}), tmp_path / "run",
                            resume=True)
    rest = trainer.train_dcgan(trainer.load_run_config(tmp_path / "run"), tmp_path / "run", resume=True)
    assert rest.epochs_done == 2 and {"class_loss", "fake_entropy", "batch_entropy"} <= set(rest.history[-1])
