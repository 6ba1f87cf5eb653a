"""DataDAM: attention maps, the SAM/MMD terms, where gradients go, that it learns, the artefact."""

import pytest
import torch

from ddcore.data.base import RealDataset
from ddcore.data.sampler import ClassBatchSampler
from ddcore.methods import get_method
from ddcore.methods.datadam import DataDAMConfig, class_mean_distance, datadam_loss, spatial_attention
from ddcore.models import get_model, reinitialize
from ddcore.synthetic import SyntheticSet

distill = get_method("datadam").distill


def tiny_dataset(per_class: int = 20, classes: int = 3, size: int = 8) -> RealDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.randn(len(labels), 1, size, size, generator=g) + labels.view(-1, 1, 1, 1).float()
    return RealDataset(
        "tiny", images, labels, images[:10], labels[:10], [str(c) for c in range(classes)], (0.0,), (1.0,)
    )


def test_attention_maps_have_unit_norm_and_spatial_shape():
    torch.manual_seed(0)
    net = get_model("ConvNetD3", 1, 10, 28)
    maps, embedding = net.features(torch.randn(5, 1, 28, 28))
    for feature_map, side in zip(maps, (32, 16, 8)):
        attention = spatial_attention(feature_map, power=2.0)
        assert attention.shape == (5, side * side)
        assert torch.allclose(attention.norm(dim=1), torch.ones(5), atol=1e-5)
    assert embedding.shape == (5, 128 * 4 * 4)


def test_terms_zero_for_identical_batches_and_positive_otherwise():
    torch.manual_seed(0)
    net = get_model("ConvNetD3", 1, 3, 8).requires_grad_(False)
    config = DataDAMConfig(ipc=4, batch_real=4)
    real = torch.randn(12, 1, 8, 8)
    same = datadam_loss(net, real, real.clone(), 3, config)
    assert same["sam"].item() == pytest.approx(0.0, abs=1e-10) and same["mmd"].item() == pytest.approx(0.0, abs=1e-10)
    other = datadam_loss(net, real, torch.randn(12, 1, 8, 8), 3, config)
    assert other["sam"].item() > 0 and other["mmd"].item() > 0
    assert other["loss"].item() == pytest.approx(other["sam"].item() + other["mmd"].item(), rel=1e-6)


def test_class_mean_distance_matches_per_class_loop():
    real, synthetic = torch.randn(3 * 5, 7), torch.randn(3 * 2, 7)
    expected = sum(
        ((real[5 * c : 5 * c + 5].mean(0) - synthetic[2 * c : 2 * c + 2].mean(0)) ** 2).sum() for c in range(3)
    )
    assert class_mean_distance(real, synthetic, 3).item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradients_reach_only_the_synthetic_images():
    torch.manual_seed(0)
    net = get_model("ConvNetD2", 1, 3, 8).requires_grad_(False)
    real = torch.randn(6, 1, 8, 8, requires_grad=True)
    synthetic = torch.randn(3, 1, 8, 8, requires_grad=True)
    datadam_loss(net, real, synthetic, 3, DataDAMConfig(ipc=1, batch_real=2))["loss"].backward()
    assert synthetic.grad is not None and synthetic.grad.abs().sum() > 0
    assert real.grad is None
    assert all(p.grad is None for p in net.parameters())


def test_a_few_iterations_lower_the_loss():
    data = tiny_dataset()
    config = DataDAMConfig(
        ipc=2,
        iterations=40,
        batch_real=8,
        model="ConvNetD2",
        init="noise",
        dsa_strategy="none",
        lr_images=1.0,
        log_every=10,
        device="cpu",
    )
    windows = []
    synthetic = distill(data, config, callback=lambda report: windows.append(report.losses["loss"]))
    assert len(windows) == 4 and windows[-1] < windows[0]
    assert synthetic.images.shape == (6, 1, 8, 8) and synthetic.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_course_variant_trains_the_network_between_updates():
    data = tiny_dataset()
    config = DataDAMConfig(
        ipc=1,
        iterations=6,
        batch_real=4,
        model="ConvNetD2",
        dsa_strategy="none",
        updates_per_network=3,
        network_steps=2,
        log_every=3,
        device="cpu",
    )
    windows = []
    distill(data, config, callback=lambda report: windows.append(report.iteration))
    assert windows == [3, 6]


def test_synthetic_set_round_trips_with_weights_only(tmp_path):
    data = tiny_dataset()
    synthetic = distill(
        data, DataDAMConfig(ipc=1, iterations=2, batch_real=2, model="ConvNetD2", log_every=1, device="cpu")
    )
    path = synthetic.save(tmp_path / "set.pt")
    assert not list(tmp_path.glob("*.partial"))
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"images", "labels", "mean", "std", "config"}
    loaded = SyntheticSet.load(path)
    assert torch.equal(loaded.images, synthetic.images) and torch.equal(loaded.labels, synthetic.labels)
    assert loaded.config["ipc"] == 1 and loaded.mean == (0.0,)


def test_the_loop_builds_its_network_once_and_redraws_it_in_place(monkeypatch):
    """No module construction per iteration (host work that grows with the model on a GPU): one
    build, then `reinitialize` with the iteration's seed, which draws what a new network would."""
    import ddcore.methods.datadam as datadam

    built = []
    monkeypatch.setattr(datadam, "get_model", lambda *a: built.append(a) or get_model(*a))
    nets = []
    monkeypatch.setattr(datadam, "reinitialize", lambda net: nets.append(net) or reinitialize(net))
    config = DataDAMConfig(ipc=1, batch_real=4, iterations=4, model="ConvNetD2", device="cpu")
    distill(tiny_dataset(), config)
    assert len(built) == 1 and len(nets) == 3 and all(net is nets[0] for net in nets)


def test_device_sampler_draws_distinct_class_members_reproducibly():
    data = RealDataset(
        "uneven",
        torch.zeros(13, 1, 2, 2),
        torch.tensor([0] * 8 + [1] * 2 + [2] * 3),  # class 1 holds fewer than n: with replacement
        torch.zeros(1, 1, 2, 2),
        torch.zeros(1, dtype=torch.long),
        ["0", "1", "2"],
        (0.0,),
        (1.0,),
    )
    draws = [ClassBatchSampler(data.class_indices, 3, torch.device("cpu"), seed=5) for _ in range(2)]
    first = [draws[0].sample() for _ in range(20)]
    assert all(torch.equal(a, draws[1].sample()) for a in first)  # same seed, same batches
    assert not all(torch.equal(first[0], later) for later in first[1:])
    seen = set()
    for index in first:
        rows = index.view(3, 3)
        assert all((data.train_labels[rows[c]] == c).all() for c in range(3))
        assert len(set(rows[0].tolist())) == 3 and len(set(rows[2].tolist())) == 3  # distinct where possible
        seen |= set(rows[0].tolist())
    assert seen == set(range(8))  # padding never drawn, every member reachable


def test_the_loop_draws_real_batches_on_the_device_without_host_permutations(monkeypatch):
    """After set-up, no host `randperm` per class per iteration: the sampler lives on the run's device."""
    import ddcore.methods.datadam as datadam

    data = tiny_dataset()
    config = DataDAMConfig(ipc=1, batch_real=4, iterations=3, model="ConvNetD2", device="cpu", log_every=1)
    run, again = (datadam.DataDAMRun(data, config, None, 0, False) for _ in range(2))
    assert run.real_batches.table.device == run.real_images.device
    assert run.real_batches.generator.device == run.real_images.device

    def no_randperm(*args, **kwargs):
        raise AssertionError("host randperm inside the loop")

    monkeypatch.setattr(torch, "randperm", no_randperm)
    losses = [run.step(i)["loss"].item() for i in range(3)]
    assert [again.step(i)["loss"].item() for i in range(3)] == losses  # deterministic


def test_the_course_setting_costs_its_network_steps_and_its_larger_real_batch():
    """The time model's units (`DataDAM.cost`): the paper preset is one IPC-10, 64-real-image iteration; the
    course's 256 real images cost 2.07 of it (measured) and its 50 network steps are counted apart."""

    method = get_method("datadam")
    paper = method.cost(method.config("paper", "mnist", 10), "mnist").per_iteration
    course = method.cost(method.config("course", "mnist", 10), "mnist").per_iteration
    assert paper == {"datadam_iteration": 1.0}
    assert course["datadam_network_step"] == 50 and course["datadam_iteration"] == pytest.approx(2.07, abs=0.01)
