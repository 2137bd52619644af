"""The evaluation harness on tiny models: its figures checked against first principles."""

import copy
import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch
from conftest import run_cli

from edgec.assignment import uniform_assignment, validate_assignment
from edgec.compress import compress
from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.data import calibration_text, evaluation_text, read_user_text
from edgec.evaluation.causal_lm import compare_causal_lm, token_windows
from edgec.evaluation.encoder import compare_encoder, embed, split_sentences
from edgec.evaluation.run import EvalSettings, evaluate
from edgec.footprint import model_bytes
from edgec.models.loading import load_model
from edgec.passes import LayerConfig


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return load_model(tiny_llama_dir)


def _rtn(loaded, model, assignment):
    """Round-to-nearest `model` (a copy of loaded.model) in place, as `edgec eval` does."""
    compress(dataclasses.replace(loaded, model=model), {n: LayerConfig(f, "rtn") for n, f in assignment.items()},
             progress=False)


def test_shipped_texts_are_the_two_novels_and_disjoint():
    ev, cal = evaluation_text(), calibration_text()
    assert "Elizabeth" in ev and "Darcy" in ev and len(ev) > 600_000
    assert "Elinor" in cal and "Marianne" in cal and len(cal) > 600_000
    ev_lines = {line for line in ev.splitlines() if len(line) > 60}
    assert not ev_lines & {line for line in cal.splitlines() if len(line) > 60}


def test_user_text_errors(tmp_path):
    with pytest.raises(EdgecError, match="text file not found"):
        read_user_text(tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(EdgecError, match="empty"):
        read_user_text(tmp_path / "empty.txt")


def test_perplexity_matches_transformers_loss(llama):
    windows = token_windows(llama.tokenizer, evaluation_text()[:20_000], seq_len=64, max_tokens=256)
    assert windows.ids.shape == (4, 64)
    result = compare_causal_lm(llama.model, None, windows, batch_size=3, progress=False)
    with torch.no_grad():
        losses = [llama.model(w[None], labels=w[None]).loss.item() for w in windows.ids]
    assert result.perplexity_original == pytest.approx(math.exp(np.mean(losses)), rel=1e-4)
    assert result.predictions == 4 * 63 and result.kl_mean is None


def test_identical_models_have_zero_kl_and_full_agreement(llama):
    windows = token_windows(llama.tokenizer, evaluation_text()[:20_000], seq_len=32, max_tokens=128)
    result = compare_causal_lm(llama.model, copy.deepcopy(llama.model), windows, progress=False)
    assert result.kl_mean == pytest.approx(0, abs=1e-6)
    assert result.top1_agreement == 1.0
    assert result.perplexity_compressed == pytest.approx(result.perplexity_original, rel=1e-6)


def test_kl_is_the_mean_per_token_kl(llama):
    windows = token_windows(llama.tokenizer, evaluation_text()[:20_000], seq_len=16, max_tokens=32)
    other = copy.deepcopy(llama.model)
    _rtn(llama, other, uniform_assignment(other, llama.adapter, "int2:g32"))
    result = compare_causal_lm(llama.model, other, windows, progress=False)
    with torch.no_grad():
        p = torch.log_softmax(llama.model(windows.ids).logits[:, :-1], -1)
        q = torch.log_softmax(other(windows.ids).logits[:, :-1], -1)
    expected = torch.nn.functional.kl_div(q, p, log_target=True, reduction="sum").item() / windows.predictions
    assert result.kl_mean == pytest.approx(expected, rel=1e-4) and result.kl_mean > 0
    assert result.top1_agreement == pytest.approx((p.argmax(-1) == q.argmax(-1)).float().mean().item())


def test_too_short_text_is_refused(llama):
    with pytest.raises(EdgecError, match="fewer than one window"):
        token_windows(llama.tokenizer, "Too short.", seq_len=512, max_tokens=None)


def test_rtn_writes_exactly_the_formats_dequantized_weights(llama):
    model = copy.deepcopy(llama.model)
    fmt = parse_format("nf4:g32")
    assignment = uniform_assignment(model, llama.adapter, fmt)
    refs = validate_assignment(model, llama.adapter, assignment)
    before = {n: r.weight().numpy().copy() for n, r in refs.items()}
    _rtn(llama, model, assignment)
    for name, ref in refs.items():
        np.testing.assert_array_equal(ref.weight().numpy(), fmt.fake_quantize(before[name]))
    assert "lm_head" not in assignment


def test_bad_assignment_is_refused_before_any_weight_changes(llama):
    model = copy.deepcopy(llama.model)
    assignment = uniform_assignment(model, llama.adapter, "int8")
    assignment["model.layers.9.mlp.up_proj"] = parse_format("int8")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(EdgecError, match="model.layers.9.mlp.up_proj"):
        _rtn(llama, model, assignment)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_model_bytes_counts_tied_weights_once_and_formats_exactly(llama):
    model, adapter = llama.model, llama.adapter
    params = {id(p): p for p in model.parameters()}.values()
    assert model_bytes(model, adapter) == sum(p.numel() * 4 for p in params)
    fmt = parse_format("int4:g32")
    assignment = uniform_assignment(model, adapter, fmt, include_head=True)
    linears = validate_assignment(model, adapter, assignment)
    quantized = {id(r.module.weight) for r in linears.values()}
    rest = sum(p.numel() * 4 for p in params if id(p) not in quantized)
    assert model_bytes(model, adapter, assignment) == rest + sum(fmt.nbytes(r.shape) for r in linears.values())


def test_evaluate_reports_both_models(llama):
    settings = EvalSettings(format="int4:g32", seq_len=32, max_tokens=256, progress=False)
    report = evaluate(llama, settings)
    assert report.format == "int4:g32" and report.method == "rtn" and report.quantized_layers == 14
    assert report.bytes_compressed < report.bytes_original
    assert report.lm.kl_mean > 0 and 0 <= report.lm.top1_agreement <= 1


def test_encoder_embeddings_are_mean_pooled_and_normalised(tiny_bert_dir):
    bert = load_model(tiny_bert_dir)
    sentences = split_sentences(evaluation_text(), 6)
    vecs = embed(bert.model, bert.tokenizer, sentences, batch_size=4)
    assert vecs.shape == (6, 64)
    np.testing.assert_allclose(vecs.norm(dim=-1).numpy(), 1, rtol=1e-5)
    one = bert.tokenizer(sentences[:1], return_tensors="pt")
    with torch.no_grad():
        hidden = bert.model(**one).last_hidden_state[0].mean(0)
    np.testing.assert_allclose(vecs[0].numpy(), torch.nn.functional.normalize(hidden, dim=0).numpy(), atol=1e-5)
    same = compare_encoder(bert.model, copy.deepcopy(bert.model), bert.tokenizer, sentences)
    assert same.mean_cosine == pytest.approx(1, abs=1e-6)


def test_cli_eval_json_on_a_model_folder(tiny_llama_dir, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(evaluation_text()[:30_000])
    done = run_cli("eval", "--model", str(tiny_llama_dir), "--format", "2:4+int8", "--text", str(text),
                   "--seq-len", "64", "--max-tokens", "512", "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert re.fullmatch(r"evaluating: about \d+s expected", lines[0]) and lines[1] == "evaluating: 0/2 blocks to do"
    out = json.loads(done.stdout)
    assert out["format"] == "2:4+int8" and out["text"] == str(text)
    assert out["lm"]["windows"] == 8 and out["lm"]["kl_mean"] > 0
    assert out["bytes_compressed"] < out["bytes_original"]


def test_cli_eval_human_output_and_encoder(tiny_bert_dir):
    done = run_cli("eval", "--model", str(tiny_bert_dir), "--format", "int8", "--sentences", "16")
    assert done.returncode == 0, done.stderr
    assert "cosine to original" in done.stdout and "16 sentences" in done.stdout
    # stderr is a pipe here, not a terminal: progress comes as whole log lines, not a redrawn bar
    assert "\r" not in done.stderr and "embedding: 0/1 batches to do" in done.stderr.splitlines()


def test_cli_refuses_unknown_format_before_loading():
    done = run_cli("eval", "--format", "int4:g100")
    assert done.returncode == 2 and "int4:g100" in done.stderr and "int4:g{32,64,128,256}" in done.stderr


def test_linear_bits_per_weight_is_the_formats_for_a_uniform_assignment(llama):
    from edgec.footprint import linear_bits_per_weight

    for text in ("int4:g32", "2:4+int8", "fp8"):
        fmt = parse_format(text)
        assignment = uniform_assignment(llama.model, llama.adapter, fmt)
        shapes = [r.shape for r in validate_assignment(llama.model, llama.adapter, assignment).values()]
        expected = 8 * sum(fmt.nbytes(s) for s in shapes) / sum(s[0] * s[1] for s in shapes)
        assert linear_bits_per_weight(llama.model, llama.adapter, assignment) == pytest.approx(expected)


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_gemma3_dir", "tiny_gpt2_dir"])
@pytest.mark.parametrize("include_head", [False, True])
def test_block_by_block_evaluation_is_the_whole_model_comparison(family, include_head, request, monkeypatch):
    """eval's block-by-block pass (no second model) against two whole models run by transformers: Gemma 3's
    per-kind attention and soft-capped logits, GPT-2's transposed Conv1D, a quantized tied head; the head in
    vocabulary bands of an odd width over several passes of positions."""
    from edgec.calibration import vocab_bands
    from edgec.evaluation import blockwise
    from edgec.evaluation.blockwise import compare_rtn_by_block

    monkeypatch.setattr(blockwise, "POSITIONS_PER_PASS", 64)  # 155 predictions: passes of 64, 64 and 27
    monkeypatch.setattr(vocab_bands, "LOGITS_PER_BAND", 64 * 37)  # bands of 37 tokens

    loaded = load_model(request.getfixturevalue(family))
    windows = token_windows(loaded.tokenizer, evaluation_text()[:20_000], seq_len=32, max_tokens=160)
    assignment = uniform_assignment(loaded.model, loaded.adapter, parse_format("int4:g32"), include_head)
    other = copy.deepcopy(loaded.model)
    _rtn(loaded, other, assignment)
    whole = compare_causal_lm(loaded.model, other, windows, batch_size=2, progress=False)
    before = {name: p.clone() for name, p in loaded.model.state_dict().items()}
    blocks = compare_rtn_by_block(loaded, assignment, windows, batch_size=2, progress=False)
    assert blocks.perplexity_original == pytest.approx(whole.perplexity_original, rel=1e-5)
    assert blocks.perplexity_compressed == pytest.approx(whole.perplexity_compressed, rel=1e-5)
    assert blocks.kl_mean == pytest.approx(whole.kl_mean, rel=1e-6) and blocks.kl_mean > 0
    assert blocks.top1_agreement == whole.top1_agreement
    assert all(torch.equal(p, before[name]) for name, p in loaded.model.state_dict().items())  # the model is intact
    alone = compare_rtn_by_block(loaded, {}, windows, batch_size=2, progress=False)
    assert alone.perplexity_original == blocks.perplexity_original and alone.kl_mean is None
