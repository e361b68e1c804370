"""Lion against hand-computed steps and the paper's pseudo-code, and inside a real lightning_llm run."""

import math

import pytest
import torch
from llm_lion import Lion
from torch import nn

import lightning_llm
from lightning_llm.optim import param_groups


def test_lion_is_registered_by_its_package():
    plugin = lightning_llm.get("optim", "lion")  # found through the entry point of the installed package
    assert plugin.source == "llm-lion"
    assert [p.name for p in plugin.parameters()] == ["lr", "beta1", "beta2", "weight_decay"]
    assert [p.default for p in plugin.parameters()] == [1e-4, 0.9, 0.99, 0.0]


def test_two_steps_match_a_hand_computation():
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = Lion([w], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    # Step 1: m = 0, so c = 0.1 * g = [0.03, -0.04] -> sign [1, -1];
    # w = [1, -2] * (1 - 0.1 * 0.5) - 0.1 * [1, -1] = [0.85, -1.8]; m = 0.01 * g = [0.003, -0.004].
    w.grad = torch.tensor([0.3, -0.4], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.85, -1.8], dtype=torch.float64))
    torch.testing.assert_close(opt.state[w]["exp_avg"], torch.tensor([0.003, -0.004], dtype=torch.float64))
    # Step 2: c = 0.9 * m + 0.1 * g = [0.0007, -0.0035] -> sign [1, -1]: the momentum outvotes the first
    # coordinate's gradient; w = [0.85, -1.8] * 0.95 - 0.1 * [1, -1] = [0.7075, -1.61];
    # m = 0.99 * m + 0.01 * g = [0.00277, -0.00395].
    w.grad = torch.tensor([-0.02, 0.001], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([0.7075, -1.61], dtype=torch.float64))
    torch.testing.assert_close(
        opt.state[w]["exp_avg"], torch.tensor([0.00277, -0.00395], dtype=torch.float64)
    )


def paper_update(weight, gradient, momentum, lr, beta1, beta2, wd):
    """Program 1 of Chen et al. (2023), transcribed: returns (update, momentum); weight -= update."""

    def interp(x, y, beta):
        return (1 - beta) * x + beta * y

    update = interp(gradient, momentum, beta1)
    update = torch.sign(update)
    momentum = interp(gradient, momentum, beta2)
    weight_decay = weight * wd
    update = update + weight_decay
    update = update * lr
    return update, momentum


def test_matches_the_papers_update_on_a_quadratic():
    curvature = torch.tensor([1.0, 10.0, 0.1, 3.0], dtype=torch.float64)  # f(w) = 0.5 * sum(a * w^2)
    start = torch.tensor([2.0, -1.0, 0.5, -3.0], dtype=torch.float64)
    lr, beta1, beta2, wd = 0.05, 0.9, 0.99, 0.1
    w = nn.Parameter(start.clone())
    opt = Lion([w], lr=lr, betas=(beta1, beta2), weight_decay=wd)
    ref_w, ref_m = start.clone(), torch.zeros_like(start)

    def loss(x):
        return 0.5 * (curvature * x**2).sum()

    for _ in range(100):
        opt.zero_grad()
        loss(w).backward()
        opt.step()
        update, ref_m = paper_update(ref_w, curvature * ref_w, ref_m, lr, beta1, beta2, wd)
        ref_w = ref_w - update
        torch.testing.assert_close(w.detach(), ref_w, rtol=0, atol=1e-12)
    assert loss(w).item() < 0.1 * loss(start).item()


def test_each_group_keeps_its_own_weight_decay():
    """lightning_llm passes two groups; weight_decay applies to the first, the second keeps its 0."""
    model = nn.Sequential(nn.Embedding(8, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    opt = lightning_llm.build("optim", "lion", params=param_groups(model), lr=0.01, weight_decay=1.0)
    assert [g["weight_decay"] for g in opt.param_groups] == [1.0, 0.0]
    before = [[p.detach().clone() for p in g["params"]] for g in opt.param_groups]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # sign(0) = 0: only weight decay can move a weight
    opt.step()
    for old, p in zip(before[0], opt.param_groups[0]["params"], strict=True):
        torch.testing.assert_close(p.detach(), old * (1 - 0.01 * 1.0))
    for old, p in zip(before[1], opt.param_groups[1]["params"], strict=True):
        assert torch.equal(p.detach(), old)


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"betas": (1.0, 0.99)}, {"weight_decay": -1.0}])
def test_bad_hyperparameters_name_the_key(bad):
    with pytest.raises(ValueError, match="optim\\."):
        Lion([nn.Parameter(torch.zeros(1))], **bad)


def test_trains_through_the_cli(train_cli):
    run_dir, summary = train_cli("optim=lion", "optim.lr=3e-4")
    assert summary["step"] == 8
    assert math.isfinite(summary["val_loss"])
    assert "name: lion" in (run_dir / ".hydra" / "config.yaml").read_text()
