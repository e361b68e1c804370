"""The LightningModule: how it keeps what it measures exact whatever the model's precision."""

import pytest
import torch

from lightning_llm import registry
from lightning_llm.module import LanguageModule


def tiny_module() -> LanguageModule:
    model = registry.build("model", "gpt", vocab_size=40, n_layer=1, n_head=2, n_embd=16, block_size=8)
    metrics = {name: registry.build("metric", name) for name in ("perplexity", "accuracy")}
    return LanguageModule(
        model,
        registry.build("objective", "causal_lm"),
        optim={"name": "adamw"},
        scheduler={"name": "constant"},
        metrics=metrics,
    )


def state_dtypes(module: torch.nn.Module) -> dict[str, torch.dtype]:
    """Every metric state's dtype, by the metric's name in the module and the state's."""
    return {
        f"{name}.{state}": value.dtype
        for name, metric in module.named_modules()
        if hasattr(metric, "metric_state")
        for state, value in metric.metric_state.items()
        if isinstance(value, torch.Tensor)
    }


def test_a_cast_to_bf16_casts_the_weights_and_not_what_the_metrics_sum():
    """Lightning's bf16-true casts the module with .to(dtype), which torchmetrics lets through: val_loss was
    then summed in bfloat16 (2% off on the default run) and val_tokens rounded."""
    module = tiny_module()
    before = state_dtypes(module)
    assert before["val_loss.mean_value"] == before["val_metrics.perplexity.nll_sum"] == torch.float64
    module.to(dtype=torch.bfloat16)
    assert module.model.wte.weight.dtype == torch.bfloat16
    assert state_dtypes(module) == before
    module.val_tokens.update(torch.tensor(24512.0))
    module.val_tokens.update(torch.tensor(1.0))
    assert module.val_tokens.compute().item() == 24513  # 24,513 is no bfloat16 number
    module.to(dtype=torch.float32)  # and back, as a test of the loop's float32 copy does
    assert module.model.wte.weight.dtype == torch.float32 and state_dtypes(module) == before


def test_an_objective_plugin_whose_loss_breaks_the_contract_is_named():
    """A loss returning the mean alone was torch's "iteration over a 0-d tensor", 235 lines down."""

    class MeanOnly:
        def loss(self, model, batch):
            return model(batch["input_ids"]).float().mean()

    module = tiny_module()
    module.objective = MeanOnly()
    batch = {"input_ids": torch.zeros(2, 8, dtype=torch.long), "labels": torch.zeros(2, 8, dtype=torch.long)}
    with pytest.raises(
        TypeError,
        match=r"objective 'MeanOnly': loss\(model, batch\) must return \(summed loss "
        r"tensor, number of target tokens, outputs\); it returned a Tensor",
    ):
        module._objective_loss(batch)
    module.objective = registry.build("objective", "causal_lm")
    loss, tokens, _ = module._objective_loss(batch)
    assert tokens.item() == 16


@pytest.mark.parametrize(
    ("batch", "held"),
    [
        ((torch.zeros(2, 4), torch.zeros(2, 4)), "it is tuple"),
        ({"tokens": torch.zeros(2, 4)}, r"it is \['tokens'\]"),
    ],
)
def test_a_batch_that_is_not_a_dict_of_input_ids_is_named(batch, held):
    """A data plugin's tuple batch was "max() arg is an empty sequence", as if the input were at fault."""
    from lightning_llm.module import check_batch

    with pytest.raises(
        TypeError, match=r"a batch of the data plugin must be a dict holding input_ids .*; " + held
    ):
        check_batch(batch)
    check_batch({"decoder_input_ids": torch.zeros(2, 4, dtype=torch.long)})
