"""One real-model check per pass family, kept short for CI (marked slow)."""

import copy

import pytest

from edgec.activation_quant import attach_activation_quant
from edgec.assignment import uniform_assignment
from edgec.compress import CalibrationSettings, compress
from edgec.core.formats import parse_format
from edgec.core.layer_input import ActivationQuant
from edgec.data import evaluation_text
from edgec.evaluation.causal_lm import compare_causal_lm, token_windows
from edgec.evaluation.encoder import compare_encoder, split_sentences
from edgec.models.loading import load_model
from edgec.passes import LayerConfig, SmoothQuant, SmoothQuantOptions

pytestmark = pytest.mark.slow
ENCODER_CAL = CalibrationSettings(samples=16, seq_len=128)


@pytest.fixture(scope="module")
def minilm():
    loaded = load_model("minilm")
    return loaded, copy.deepcopy(loaded.model), split_sentences(evaluation_text(), 128)


def _encoder_cosine(minilm, text, method):
    loaded, original, sentences = minilm
    loaded = copy.copy(loaded)
    loaded.model = copy.deepcopy(original)
    fmt = parse_format(text)
    request = {n: LayerConfig(f, method) for n, f in uniform_assignment(loaded.model, loaded.adapter, fmt).items()}
    compress(loaded, request, ENCODER_CAL, progress=False)
    return compare_encoder(original, loaded.model, loaded.tokenizer, sentences, progress=False).mean_cosine


def test_gptq_and_awq_beat_rtn_on_the_fp32_encoder(minilm):
    rtn = _encoder_cosine(minilm, "int4:g128", "rtn")
    assert _encoder_cosine(minilm, "int4:g128", "gptq") > rtn
    assert _encoder_cosine(minilm, "int4:g128", "awq") > rtn


def test_sparsegpt_beats_magnitude_at_2to4_on_the_fp32_encoder(minilm):
    assert _encoder_cosine(minilm, "2:4", "sparsegpt") > _encoder_cosine(minilm, "2:4", "magnitude")


def test_smoothquant_w8a8_beats_unsmoothed_w8a8_on_smollm2():
    fmt = parse_format("int8")
    perplexity = {}
    for smooth in (False, True):
        loaded = load_model()
        windows = token_windows(loaded.tokenizer, evaluation_text(), 512, 2048)
        if smooth:
            perplexity["original"] = compare_causal_lm(loaded.model, None, windows, progress=False).perplexity_original
        request = {n: LayerConfig(f, "smoothquant") for n, f in uniform_assignment(loaded.model, loaded.adapter, fmt).items()}
        result = compress(loaded, request, CalibrationSettings(samples=8, seq_len=512),
                          {"smoothquant": SmoothQuant(SmoothQuantOptions(smooth=smooth))}, progress=False)
        attach_activation_quant(loaded.model, {n: ActivationQuant(float(r.act_scale), fmt, r.input_scale)
                                              for n, r in result.layers.items()})
        perplexity[smooth] = compare_causal_lm(loaded.model, None, windows, progress=False).perplexity_original
    assert perplexity[True] < perplexity[False]
    assert perplexity[True] < 1.5 * perplexity["original"]
