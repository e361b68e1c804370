import pytest
import torch

from lightning_llm import registry
from lightning_llm.optim.schedulers import constant_multiplier, cosine_multiplier, linear_multiplier


def lrs(name: str, total_steps: int, **params) -> list[float]:
    """The learning rate of each optimizer step 0..total_steps, for a peak lr of 1."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = registry.build("scheduler", name, optimizer=optimizer, total_steps=total_steps, **params)
    values = []
    for _ in range(total_steps + 1):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


@pytest.mark.parametrize("name", ["cosine", "linear", "constant"])
def test_warmup_rises_linearly_to_the_peak(name):
    values = lrs(name, total_steps=100, warmup_steps=10)
    steps = [values[i + 1] - values[i] for i in range(10)]
    assert steps == pytest.approx([1 / 11] * 10)
    assert values[0] == pytest.approx(1 / 11)  # the first step already learns
    assert values[10] == pytest.approx(1.0)


def test_cosine_decays_to_min_lr_ratio():
    values = lrs("cosine", total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert values[55] == pytest.approx(0.55)  # halfway through the decay: the midpoint of 1 and 0.1
    assert values[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
    assert cosine_multiplier(500, 100, 10, 0.1) == pytest.approx(0.1)  # stays at the floor


def test_linear_decays_to_min_lr_ratio():
    values = lrs("linear", total_steps=100, warmup_steps=0, min_lr_ratio=0.0)
    assert values[0] == pytest.approx(1.0)
    assert values[25] == pytest.approx(0.75)
    assert values[100] == pytest.approx(0.0)
    assert linear_multiplier(150, 100, 0, 0.2) == pytest.approx(0.2)


def test_constant_stays_at_the_peak():
    assert lrs("constant", total_steps=20) == [1.0] * 21
    assert constant_multiplier(3, warmup_steps=4) == pytest.approx(4 / 5)


def test_a_warmup_longer_than_the_run_is_an_error_and_a_fraction_is_a_share():
    with pytest.raises(ValueError, match=r"warmup_steps=100 is longer than the run's 10 optimizer steps"):
        lrs("cosine", total_steps=10, warmup_steps=100)
    with pytest.raises(ValueError, match=r"warmup_steps=1 and scheduler.warmup_fraction=0.1 are both set"):
        lrs("linear", total_steps=10, warmup_steps=1, warmup_fraction=0.1)
    with pytest.raises(ValueError, match=r"warmup_fraction must be in \[0, 1\]"):
        lrs("constant", total_steps=10, warmup_fraction=1.5)
    assert lrs("cosine", total_steps=100, warmup_fraction=0.2) == lrs(
        "cosine", total_steps=100, warmup_steps=20
    )
    assert lrs("cosine", total_steps=100) == lrs("cosine", total_steps=100, warmup_steps=10)  # default: 10%
    assert lrs("constant", total_steps=10)[0] == pytest.approx(1.0)  # default: none


def test_the_config_check_refuses_a_warmup_longer_than_max_steps(make_cfg):
    from lightning_llm import config
    from lightning_llm.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"scheduler.warmup_steps=100 is longer than the run \(trainer.max_steps=8\)"
    ):
        config.check(make_cfg("scheduler.warmup_steps=100"))
    config.check(make_cfg("scheduler.warmup_fraction=0.5"))


@pytest.mark.parametrize(
    "override,message",
    [
        ("scheduler.warmup_fraction=2", r"scheduler.warmup_fraction must be a number in \[0, 1\], got 2"),
        ("scheduler.warmup_fraction=-0.1", r"scheduler.warmup_fraction must be .* got -0.1"),
        ("scheduler.warmup_steps=-3", r"scheduler.warmup_steps must be an integer >= 0, got -3"),
    ],
)
def test_the_config_check_refuses_a_warmup_out_of_range_before_any_work(make_cfg, override, message):
    from lightning_llm import config
    from lightning_llm.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        config.check(make_cfg(override))


def test_scheduler_state_round_trips():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = registry.build("scheduler", "cosine", optimizer=optimizer, total_steps=50, warmup_steps=5)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    resumed = registry.build("scheduler", "cosine", optimizer=optimizer, total_steps=50, warmup_steps=5)
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.get_last_lr() == scheduler.get_last_lr()


@pytest.mark.parametrize(
    "params,message",
    [
        (dict(total_steps=0), "total_steps >= 1"),
        (dict(total_steps=10, warmup_steps=-1), "scheduler.warmup_steps must be >= 0, got -1"),
        (dict(total_steps=10, min_lr_ratio=1.5), r"scheduler.min_lr_ratio must be in \[0, 1\], got 1.5"),
    ],
)
def test_bad_arguments_are_named(params, message):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match=message):
        registry.build("scheduler", "cosine", optimizer=optimizer, **params)
