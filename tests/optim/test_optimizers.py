import pytest
import torch

from lightning_llm import registry
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.optim.optimizers import param_groups


def model(**overrides):
    torch.manual_seed(0)
    return GPT(
        GPTConfig(
            **(dict(vocab_size=50, n_layer=2, n_head=2, n_embd=16, block_size=8, bias=True) | overrides)
        )
    )


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_param_groups_cover_every_parameter_once(tie_embeddings):
    net = model(tie_embeddings=tie_embeddings)
    decayed, not_decayed = param_groups(net)
    grouped = decayed["params"] + not_decayed["params"]
    assert len({id(p) for p in grouped}) == len(grouped)  # none twice
    assert {id(p) for p in grouped} == {id(p) for p in net.parameters()}  # all covered
    assert not_decayed["weight_decay"] == 0.0 and "weight_decay" not in decayed


@pytest.mark.parametrize("decay_embeddings", [True, False])
def test_matrices_and_embeddings_are_decayed_biases_and_norms_not(decay_embeddings):
    """nanoGPT's and the Hugging Face Trainer's rule: every tensor of 2+ dimensions, embeddings included;
    optim.decay_embeddings=false leaves the tables (and a head tied to them) out."""
    net = model()
    groups = param_groups(net, decay_embeddings)
    decayed, not_decayed = (set(map(id, group["params"])) for group in groups)
    names = {id(p): name for name, p in net.named_parameters()}
    vectors = {name for name in names.values() if name.endswith("bias") or ".ln_" in name or "ln_f" in name}
    tables = {"wte.weight", "wpe.weight"}
    matrices = {
        name for name in names.values() if name.endswith(("c_attn.weight", "c_fc.weight", "c_proj.weight"))
    }
    assert {names[i] for i in not_decayed} == (vectors if decay_embeddings else vectors | tables)
    assert {names[i] for i in decayed} == (matrices | tables if decay_embeddings else matrices)
    assert (id(net.lm_head.weight) in decayed) == decay_embeddings  # tied to wte


def test_an_untied_head_is_decayed_even_when_the_tables_are_not():
    net = model(tie_embeddings=False)
    decayed = {id(p) for p in param_groups(net, decay_embeddings=False)[0]["params"]}
    assert id(net.lm_head.weight) in decayed and id(net.wte.weight) not in decayed


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_family(name, cls):
    net = model()
    optimizer = registry.build("optim", name, params=param_groups(net), lr=0.01, weight_decay=0.2)
    assert isinstance(optimizer, cls)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.2, 0.0]
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert optimizer.defaults["fused"] is True  # CPU parameters: the fused kernel, not torch's Python loop
    before = net.lm_head.weight.detach().clone()
    net(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, net.lm_head.weight)


def test_adamw_defaults_follow_gpt3():
    optimizer = registry.build("optim", "adamw", params=param_groups(model()))
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    assert optimizer.param_groups[0]["weight_decay"] == 0.1


def test_fused_can_be_turned_off():
    optimizer = registry.build("optim", "adamw", params=param_groups(model()), fused=False)
    assert optimizer.defaults["fused"] is False


def test_fused_matches_the_reference_implementation():
    """The fused kernel takes the same steps as torch's per-parameter loop (to float rounding)."""
    torch.manual_seed(0)
    start = [torch.randn(5, 7), torch.randn(7)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(3)]
    results = []
    for fused in (True, False):
        params = [p.clone().requires_grad_() for p in start]
        groups = [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}]
        optimizer = registry.build("optim", "adamw", params=groups, lr=0.01, fused=fused)
        for step_grads in grads:
            for param, grad in zip(params, step_grads, strict=True):
                param.grad = grad.clone()
            optimizer.step()
        results.append(params)
    for fused, reference in zip(*results, strict=True):
        torch.testing.assert_close(fused, reference, rtol=1e-6, atol=1e-7)


def test_sgd():
    optimizer = registry.build("optim", "sgd", params=param_groups(model()))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["nesterov"] is True and optimizer.defaults["momentum"] == 0.9


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("adamw", dict(lr=-1.0), "optim.lr must be > 0, got -1"),
        ("adam", dict(beta2=1.0), r"optim.beta2 must be in \[0, 1\), got 1"),
        ("adamw", dict(eps=0.0), "optim.eps must be > 0, got 0"),
        ("adamw", dict(weight_decay=-0.1), "optim.weight_decay must be >= 0, got -0.1"),
        ("sgd", dict(lr=0.0), "optim.lr must be > 0, got 0"),
        ("sgd", dict(momentum=0.0), "optim.nesterov=true needs optim.momentum > 0"),
    ],
)
def test_bad_hyperparameters_are_named(name, params, message):
    with pytest.raises(ValueError, match=message):
        registry.build("optim", name, params=param_groups(model()), **params)
