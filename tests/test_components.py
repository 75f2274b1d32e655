"""The component registry: one name resolves to the same head in the weights SGLD restricts, in
the transformer-lens hooks that read and patch it, and in the component observables."""
import pytest
import torch

from emergence.models.components import Components, hooks, order, parse
from emergence.models.gpt import GPT, GPTConfig
from emergence.models.hooked import gpt_to_hooked


def gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**dict(vocab_size=50, n_ctx=16, n_layer=2, n_head=4, d_model=32, d_mlp=64), **kw})).eval()


def test_names_parse_and_sort_by_layer_heads_first():
    assert [str(parse(n)) for n in ("L1H3", "L0.mlp", "L2", "L0.resid", "L1.even_heads")] == \
        ["L1H3", "L0.mlp", "L2", "L0.resid", "L1.even_heads"]
    assert [parse(n).kind for n in ("L1H3", "L0.mlp", "L2", "L0.resid", "L1.odd_heads")] == \
        ["head", "mlp", "block", "resid", "group"]
    assert sorted(["L1.mlp", "L0.mlp", "L1H1", "L0H1", "L0H0"], key=order) == ["L0H0", "L0H1", "L0.mlp", "L1H1", "L1.mlp"]
    with pytest.raises(ValueError, match="unknown component 'H3'"):
        parse("H3")


@pytest.mark.parametrize("attn_only", [False, True])
def test_a_heads_weights_are_its_transformer_lens_weights_and_nothing_else(attn_only):
    """Perturbing exactly the weights `Components.weights("L1H2")` names changes head 2 of layer 1 in
    the transformer-lens conversion (W_Q, W_K, W_V, W_O, b_Q, b_K, b_V) and no other head or layer."""
    model = gpt(attn_only=attn_only)
    before = gpt_to_hooked(model)
    registry = Components(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, index in registry.weights("L1H2"):
            params[name][index] += 1.0
    after = gpt_to_hooked(model)
    for layer in range(2):
        for key in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V"):
            a, b = before.blocks[layer].attn.state_dict()[key], after.blocks[layer].attn.state_dict()[key]
            changed = [h for h in range(4) if not torch.equal(a[h], b[h])]
            assert changed == ([2] if layer == 1 else []), (layer, key, changed)
        if not attn_only:
            assert all(torch.equal(v, after.blocks[layer].mlp.state_dict()[k])
                       for k, v in before.blocks[layer].mlp.state_dict().items())


def test_hook_names_exist_in_the_transformer_lens_model():
    model = gpt()
    hooked = gpt_to_hooked(model)
    registry = Components(model)
    table = hooks(registry.n_layers, registry.n_heads)
    assert set(registry.names()) <= set(table)
    assert {h for pairs in table.values() for h, _ in pairs} <= set(hooked.hook_dict)
    assert table["L1.odd_heads"] == [("blocks.1.attn.hook_z", 1), ("blocks.1.attn.hook_z", 3)]


def test_output_norms_follow_names_and_a_head_reads_its_own_output():
    model = gpt()
    registry = Components(model)
    x = torch.randint(0, 50, (3, 16))
    with registry.output_norms() as norms:
        model(x)
    phi = norms()
    assert phi.shape == (len(registry.names()),) == (2 * 4 + 2,)
    hooked = gpt_to_hooked(model)
    _, cache = hooked.run_with_cache(x)
    z = cache["blocks.1.attn.hook_z"][:, :, 2]                                    # (B, T, d_head)
    out = torch.einsum("btd,dm->btm", z, hooked.blocks[1].attn.W_O[2])
    assert torch.allclose(phi[registry.names().index("L1H2")], out.norm(dim=-1).mean(), rtol=1e-4)


def test_attention_only_and_neox_models():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    from emergence.models.checkpoints import HFCausalLM
    assert Components(gpt(attn_only=True)).names(blocks=True) == \
        ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0", "L1H1", "L1H2", "L1H3", "L0", "L1"]
    with pytest.raises(ValueError, match="attention-only model has heads only"):
        Components(gpt(attn_only=True)).weights("L0.mlp")
    hf = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=64))
    for model in (hf, HFCausalLM(hf)):
        registry = Components(model)
        assert registry.names()[-2:] == ["L0.mlp", "L1.mlp"] and registry.n_heads == 4
        params = dict(model.named_parameters())
        assert all(name in params for name, _ in registry.weights("L1H2"))


def test_any_module_restricts_by_parameter_name():
    """A module that is neither architecture (a toy potential) has its parameters as components;
    asking it for a head names what is missing."""
    toy = torch.nn.Linear(2, 1)
    registry = Components(toy)
    assert registry.weights("bias") == [("bias", (slice(None),))]
    with pytest.raises(TypeError, match="our GPT and GPT-NeoX"):
        registry.weights("L0H0")
