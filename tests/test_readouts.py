"""Readouts of several hidden states (FLUX.2 stacks 10, 20, 30 of 40): D is measured on what the
denoiser receives, checked against an independent computation through the stock model's
`output_hidden_states` and the pipeline's own prompt encoding; the view ends at the deepest read
layer; a read layer that does not exist fails before anything loads."""
import pytest
import torch
from omegaconf import OmegaConf

from skrr.encoders.readout import Readout, readout_of
from skrr.errors import ConfigError, InputError
from skrr.models import build_model, load_text_side, model_config, resolve_pretrained
from skrr.plan import make_schedule
from skrr.search.calibration import build_calibration
from skrr.search.discrepancy import Discrepancy
from skrr.search.prefix_cache import PrefixCachedDiscrepancy

PROMPTS = ["a red cat on a wooden table", "two dogs near a blue car in the city at night", "a small house",
           "three green apples and a yellow banana on a plate"]
LENGTH = 64  # tiny_flux2's max_length


class _Zero(torch.nn.Module):
    """A residual branch that adds nothing (a skipped sub-block, written against the stock layer)."""

    def forward(self, hidden_states, *args, **kwargs):
        return (torch.zeros_like(hidden_states), None) if kwargs or args else torch.zeros_like(hidden_states)


def _stock_pruned(skip, reuse):
    """The stock Mistral3 encoder (never in sub-block form) with the plan written into its layers."""
    from transformers import Mistral3ForConditionalGeneration

    model = Mistral3ForConditionalGeneration.from_pretrained(resolve_pretrained("tiny_flux2"), subfolder="text_encoder",
                                                             dtype=torch.float32).eval()
    layers = model.model.language_model.layers
    originals = [(layer.input_layernorm, layer.self_attn, layer.post_attention_layernorm, layer.mlp) for layer in layers]
    for i in skip:
        layer = layers[i // 2]
        if i in reuse:  # position i runs sub-block reuse[i]: its norm and its module
            norm_attn, attn, norm_mlp, mlp = originals[reuse[i] // 2]
            if i % 2 == 0:
                layer.input_layernorm, layer.self_attn = norm_attn, attn
            else:
                layer.post_attention_layernorm, layer.mlp = norm_mlp, mlp
        elif i % 2 == 0:
            layer.self_attn = _Zero()
        else:
            layer.mlp = _Zero()
    return model


def _independent_d(skip, reuse, pipe, prompts):
    """D = MSE(C) + MSE(null) of context_embedder(the pipeline's own stacked prompt embeddings)."""
    from diffusers import Flux2Pipeline

    dense = _stock_pruned([], {})
    pruned = _stock_pruned(skip, reuse)
    total = 0.0
    for texts in (prompts, [""]):
        with torch.no_grad():
            f = [pipe.transformer.context_embedder(Flux2Pipeline._get_mistral_3_small_prompt_embeds(
                m, pipe.tokenizer, texts, max_sequence_length=LENGTH)).double() for m in (dense, pruned)]
        total += float(((f[0] - f[1]) ** 2).mean())  # the denoiser reads every position, padding included
    return total


@pytest.fixture(scope="module")
def flux2():
    from diffusers import Flux2Pipeline

    pipe = Flux2Pipeline.from_pretrained(resolve_pretrained("tiny_flux2"), dtype=torch.float32)
    side = load_text_side("tiny_flux2")
    calib = build_calibration(side, PROMPTS, batch_size=2)
    return pipe, side, calib


PLANS = [([3], {}), ([19], {}), ([20], {}), ([59], {}), ([7, 19, 33], {19: 17}), ([0, 21, 40, 58], {21: 23})]


@pytest.mark.parametrize("skip,reuse", PLANS)
def test_d_on_stacked_readout_equals_the_stock_models_hidden_states(flux2, skip, reuse):
    pipe, side, calib = flux2
    expected = _independent_d(skip, reuse, pipe, PROMPTS)
    schedule = make_schedule(60, skip, reuse)
    reference = Discrepancy(side, calib)(schedule)
    cached = PrefixCachedDiscrepancy(side, calib)(schedule)
    assert expected > 0
    assert reference == cached  # the prefix cache carries the recorded states bit for bit
    assert reference == pytest.approx(expected, rel=1e-4)


def test_a_sub_block_after_a_read_layer_changes_only_the_deeper_reads(flux2):
    """Sub-block 20 (layer 11's attention) runs after hidden state 10 is read: it changes 20 and 30 only."""
    _, side, calib = flux2
    from skrr.search.compute import Forward

    forward = Forward(side, projection=False)
    t = calib.tokens
    h, ctx = forward.prepare(t["input_ids"], t["attention_mask"])
    dense = forward.features(forward.run(h, ctx, make_schedule(60, [], {})), ctx)
    skipped = forward.features(forward.run(h, ctx, make_schedule(60, [20], {})), ctx)
    width = dense.shape[-1] // 3  # per token: states 10, 20, 30 side by side
    assert torch.equal(dense[..., :width], skipped[..., :width])
    assert not torch.equal(dense[..., width:2 * width], skipped[..., width:2 * width])
    assert not torch.equal(dense[..., 2 * width:], skipped[..., 2 * width:])


def test_the_view_ends_at_the_deepest_read_layer_and_drops_vision_and_head():
    side = load_text_side("tiny_flux2")
    enc = side.encoder.model.language_model.layers
    assert len(enc) == 60 and enc.used_layers == 30 and enc.num_layers == 40
    assert not hasattr(side.encoder.model.language_model, "norm")  # the final norm is never read
    assert not hasattr(side.encoder.model, "vision_tower") and sum(p.numel() for p in side.encoder.lm_head.parameters()) == 0
    assert len(enc.unread_sub_block_params) == 20 and enc.dropped_params > 0


def test_the_pruned_encoder_returns_hidden_states_indexed_as_before():
    side = load_text_side("tiny_flux2")
    t = side.tokenize(PROMPTS[:1])
    with torch.no_grad():
        out = side.encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"], output_hidden_states=True)
    assert len(out.hidden_states) == 41 and all(out.hidden_states[k] is not None for k in (10, 20, 30))
    assert out.hidden_states[31] is None


def _with_readout(layers):
    cfg = OmegaConf.to_container(model_config("tiny_flux2"))
    cfg["readout"] = {"hidden_states": layers, "combine": "stack"}
    return OmegaConf.create(cfg)


def test_a_read_layer_that_does_not_exist_fails_naming_the_key_before_loading(monkeypatch):
    from transformers import Mistral3ForConditionalGeneration

    def refuse(*a, **k):
        raise AssertionError("weights were loaded")

    resolve_pretrained("tiny_flux2")  # the twin's folder exists (its config is read, never its weights)
    monkeypatch.setattr(Mistral3ForConditionalGeneration, "from_pretrained", refuse)
    with pytest.raises(InputError, match=r"^model.readout.hidden_states: hidden state 50 does not exist in a 40-layer"):
        load_text_side(_with_readout([10, 20, 50]))


def test_readout_forms():
    assert readout_of({"hidden_state": -2}) == Readout((-2,), "single")
    assert readout_of({"readout": {"hidden_states": [9, 18, 27]}}) == Readout((9, 18, 27), "stack")
    assert Readout((10, 20, 30), "stack").resolve(40) == (10, 20, 30)
    assert Readout((10, 20, 30), "stack").view_end(40) == -11
    assert Readout("all", "each").resolve(3) == (1, 2, 3)
    with pytest.raises(ConfigError, match="^readout.hidden_states lists a layer twice"):
        Readout((10, 10), "stack")
    with pytest.raises(ConfigError, match="^readout.combine is single but 2"):
        Readout((1, 2), "single")
    with pytest.raises(ConfigError, match="^readout and hidden_state are both set"):
        readout_of({"hidden_state": -2, "readout": {"hidden_states": [1, 2]}})
    with pytest.raises(ConfigError, match=r"^model.readout.combine must be one of"):
        build_model(OmegaConf.merge(model_config("tiny_flux2"), {"readout": {"combine": "mean"}}))


@pytest.mark.parametrize("method", [{"name": "skrr", "beam_width": 1}, {"name": "shortgpt"}, {"name": "laco"},
                                    {"name": "finercut"}])
def test_every_method_prunes_the_stacked_readout(method):
    """Skip, Re-use and the baselines search the 60 read sub-blocks; the plan's sparsity counts the
    read layers only, and the pruned encoder still gives the pipeline's three stacked states."""
    from skrr import apply_plan
    from skrr.prune import prune

    calibration = {"_target_": "skrr.prompts.sources.Builtin", "source": "builtin", "pool": 200, "size": 4, "seed": 0,
                   "min_tokens": None, "max_tokens": None}
    (plan,) = prune("tiny_flux2", {**method, "sparsity": 0.1}, calibration, progress=False)
    assert plan.sparsity >= 0.1 and plan.skip and max(plan.skip) < 60
    side = load_text_side("tiny_flux2")
    apply_plan(side.encoder, plan, name="tiny_flux2")
    t = side.tokenize(PROMPTS[:2])
    with torch.no_grad():
        f = side.encode(t["input_ids"], t["attention_mask"])
    assert f.shape == (2, LENGTH, 48) and bool(torch.isfinite(f).all())


def _write_plan(layers, skip):
    """A stock decoder's layers with `skip` written in: skipped branches add nothing."""
    for i in skip:
        if i % 2 == 0:
            layers[i // 2].self_attn = _Zero()
        else:
            layers[i // 2].mlp = _Zero()


def test_each_readout_d_equals_every_state_through_its_own_projection(tmp_path):
    """HiDream's form: every layer read, the last one several times, each through its own projection."""
    import copy

    from transformers import LlamaConfig, LlamaForCausalLM

    from skrr.models import TextSide
    from skrr.models.tiny import t5_tokenizer

    with torch.random.fork_rng():
        torch.manual_seed(0)
        llama = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=24, num_hidden_layers=4,
                                             num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)).eval()
        for p in llama.parameters():  # random norm gains, so a state read before or after a norm differs
            if p.dim() == 1:
                p.data.uniform_(0.5, 1.5)
        projection = torch.nn.ModuleList([torch.nn.Linear(16, 8) for _ in range(7)]).eval()  # one more, unused (T5's)
    reads = [1, 2, 3, 4, 4, 4]
    cfg = OmegaConf.create({"name": "each_readout", "family": "hidream", "max_length": 12, "attention_mask": True,
                            "clean_caption": False, "readout": {"hidden_states": reads, "combine": "each"}})
    tokenizer = t5_tokenizer()
    stock = copy.deepcopy(llama)
    side = TextSide(cfg, llama, tokenizer, projection)
    calib = build_calibration(side, PROMPTS, batch_size=2, cache_dir=tmp_path)

    def projected(model, texts):
        t = tokenizer(texts, padding="max_length", max_length=12, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hs = model(input_ids=t.input_ids, attention_mask=t.attention_mask, output_hidden_states=True).hidden_states
            return torch.cat([projection[i](hs[k]) for i, k in enumerate(reads)], dim=-1).double()

    for skip in ([1], [6], [7], [0, 5]):
        pruned = copy.deepcopy(stock)
        _write_plan(pruned.model.layers, skip)
        expected = sum(float(((projected(stock, texts) - projected(pruned, texts)) ** 2).mean()) for texts in (PROMPTS, [""]))
        schedule = make_schedule(8, skip, {})
        got = Discrepancy(side, calib)(schedule)
        assert expected > 0 and got == PrefixCachedDiscrepancy(side, calib)(schedule)
        assert got == pytest.approx(expected, rel=1e-4)


def test_hidream_twin_reads_each_llama_state_as_its_pipeline_and_transformer_do():
    """Parity on tiny_hidream_i1: the dense view's read states, bit for bit, are the ones the
    transformer picks (`llama_layers`) from the pipeline's own stacked `hidden_states[1:]`."""
    side = load_text_side("tiny_hidream_i1")
    pipe = build_model("tiny_hidream_i1").pipeline.load_class().from_pretrained(resolve_pretrained("tiny_hidream_i1"),
                                                                                 dtype=torch.float32)
    length = int(model_config("tiny_hidream_i1").max_length)
    t = side.tokenize(PROMPTS)
    with torch.no_grad():
        got = side.encode(t["input_ids"], t["attention_mask"])
        stacked = pipe._get_llama3_prompt_embeds(PROMPTS, max_sequence_length=length)
    expected = [stacked[k] for k in pipe.transformer.config.llama_layers]
    assert len(got) == len(expected) == 3 and all(torch.equal(g, e) for g, e in zip(got, expected))
    assert bool(t["attend"].all())  # the denoiser attends every text position


@pytest.mark.parametrize("name", ["tiny_lumina2", "tiny_flux2"])
def test_bf16_weights_computed_in_fp32_equal_an_fp32_copy(name):
    """The search's default on bf16 checkpoints: weights as stored, each module cast for its call.
    A decoder view's final norm (or none, when it is unread) is cast like the rest (this path raised
    AttributeError before). Not bit for bit: the rotary tables are computed in the stored dtype."""
    from skrr.search.compute import Forward

    side = load_text_side(name, dtype=torch.bfloat16)
    t = side.tokenize(PROMPTS[:2])
    upcast = Forward(side, True, torch.float32)(t["input_ids"], t["attention_mask"])
    side.encoder.float()
    side.projection.float()
    widened = Forward(side, True, torch.float32)(t["input_ids"], t["attention_mask"])
    assert upcast.dtype == torch.float32 and bool(torch.isfinite(upcast).all())
    assert torch.allclose(upcast, widened, rtol=1e-2, atol=1e-2 * float(widened.abs().max()))
