"""The head's logits a band of vocabulary rows at a time, and the figures folded from them, against whole logits."""

import pytest
import torch

from edgec.calibration import vocab_bands
from edgec.calibration.sequential import final_hidden
from edgec.calibration.vocab_bands import BandedSoftmax, head_is_tied, logit_bands, rounded_embedding
from edgec.core.formats import parse_format
from edgec.models.loading import load_model

CPU = torch.device("cpu")


def _folded(z_o, z_c, targets, width):
    soft = BandedSoftmax(len(z_o), CPU, targets)
    for start in range(0, z_o.shape[1], width):
        soft.add(start, z_o[:, start : start + width], None if z_c is None else z_c[:, start : start + width])
    return soft


@pytest.mark.parametrize("width", [1, 7, 64, 1000])
def test_folded_figures_are_those_of_the_whole_logits(width):
    gen = torch.Generator().manual_seed(0)
    z_o = torch.randn(40, 300, generator=gen) * 4
    z_c = z_o + 0.05 * torch.randn(40, 300, generator=gen)
    z_c[5] = z_o[5]  # one position where the two agree exactly
    z_o[7, [3, 250]] = z_o[7].max() + 1  # a tie for the top token, in two bands
    targets = torch.randint(0, 300, (40,), generator=gen)
    soft = _folded(z_o, z_c, targets, width)
    lp_o, lp_c = torch.log_softmax(z_o.double(), -1), torch.log_softmax(z_c.double(), -1)
    torch.testing.assert_close(soft.nll(), -lp_o.gather(1, targets[:, None])[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(soft.nll(compressed=True), -lp_c.gather(1, targets[:, None])[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(soft.kl(), (lp_o.exp() * (lp_o - lp_c)).sum(-1), rtol=1e-9, atol=1e-13)
    assert soft.kl()[5] == pytest.approx(0, abs=1e-15)
    assert torch.equal(soft.argmax_o, z_o.argmax(-1)) and soft.argmax_o[7] == 3
    assert torch.equal(soft.agreement(), z_o.argmax(-1) == z_c.argmax(-1))


def test_one_stream_gives_the_perplexity_alone():
    z = torch.randn(8, 50)
    targets = torch.arange(8)
    soft = _folded(z, None, targets, 9)
    torch.testing.assert_close(soft.nll(), torch.nn.functional.cross_entropy(z.double(), targets, reduction="none"))


def test_small_kl_is_exact_where_float32_log_softmax_is_not():
    """KL near 1e-4 nats, the size a good 4-bit model has: the fold stays at float64 accuracy."""
    gen = torch.Generator().manual_seed(1)
    z_o = torch.randn(64, 5000, generator=gen) * 3
    z_c = z_o + 0.02 * torch.randn(64, 5000, generator=gen)
    lp_o, lp_c = torch.log_softmax(z_o.double(), -1), torch.log_softmax(z_c.double(), -1)
    exact = float((lp_o.exp() * (lp_o - lp_c)).sum(-1).mean())
    assert float(_folded(z_o, z_c, None, 700).kl().mean()) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_gemma3_dir", "tiny_gpt2_dir"])
def test_logit_bands_are_the_heads_logits(family, request, monkeypatch):
    """Final norm, head and (Gemma) soft cap, band by band, against the model's own forward."""
    loaded = load_model(request.getfixturevalue(family))
    model, adapter = loaded.model, loaded.adapter
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    monkeypatch.setattr(vocab_bands, "LOGITS_PER_BAND", 18 * 29)
    blocks_out = _last_block_output(model, adapter, ids)
    with torch.no_grad():
        bands = list(logit_bands(adapter, model, blocks_out.reshape(-1, blocks_out.shape[-1]), CPU))
    assert [start for start, _ in bands] == list(range(0, model.config.vocab_size, 29))
    whole = torch.cat([z for _, z in bands], dim=1).reshape(logits.shape)
    torch.testing.assert_close(whole, logits, rtol=1e-5, atol=1e-5)


def _last_block_output(model, adapter, ids):
    """The last block's output (before the final norm), by a hook."""
    seen = []
    handle = adapter.blocks(model)[-1].register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    return seen[0]


def test_rounded_bands_are_the_formats_rounding(tiny_llama_dir, monkeypatch):
    loaded = load_model(tiny_llama_dir)
    head = loaded.adapter.head(loaded.model)
    fmt = parse_format("int4:g32")
    expected = fmt.fake_quantize(head.module.weight.detach().numpy())
    monkeypatch.setattr(vocab_bands, "LOGITS_PER_BAND", 3 * 5)  # bands of 5 rows
    hidden = torch.randn(3, head.module.weight.shape[1])
    with torch.no_grad():
        bands = [z for _, z in logit_bands(loaded.adapter, loaded.model, hidden, CPU, fmt)]
        normed = final_hidden(loaded.adapter, loaded.model, hidden, CPU)
    torch.testing.assert_close(torch.cat(bands, 1), normed @ torch.from_numpy(expected).T, rtol=1e-5, atol=1e-6)
    assert head_is_tied(loaded.model, head.module) == loaded.model.config.tie_word_embeddings


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_gemma3_dir"])
def test_rounded_embedding_looks_up_rounded_rows_and_leaves_the_model_as_it_was(family, request):
    """Gemma 3's embedding scales its rows: the compact table goes through the module's own forward."""
    loaded = load_model(request.getfixturevalue(family))
    embedding = loaded.model.get_input_embeddings()
    fmt = parse_format("int4:g32")
    ids = torch.tensor([[5, 9, 5, 200], [0, 9, 17, 17]])
    before = embedding.weight.detach().clone()
    rounded = torch.nn.Embedding.from_pretrained(torch.from_numpy(fmt.fake_quantize(before.numpy())))
    scale = (embedding(ids[:1, :1]) / before[5]).mean()  # 1, or Gemma's sqrt(hidden)
    with torch.no_grad(), rounded_embedding(loaded.model, fmt, ids):
        inside = embedding(ids)
    torch.testing.assert_close(inside, rounded(ids) * scale)
    assert torch.equal(embedding.weight, before) and torch.equal(embedding(ids), before[ids] * scale)
