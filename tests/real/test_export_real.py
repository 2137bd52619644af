"""`.edgec` export of the default model: every weight as stored, and a size the planner predicts. Slow."""

import numpy as np
import pytest

from edgec.commands.compression_options import CompressionOptions, run_compression
from edgec.export_sources import source_from_result
from edgec.exporters.edgec_export import export_edgec
from edgec.models.loading import load_model
from edgec.planner.deployment import model_shape
from edgec.planner.units import planning_units
from edgec.runtime.container import open_container

pytestmark = pytest.mark.slow


def test_default_model_exports_to_edgec_with_exact_weights_and_the_planned_size(tmp_path):
    loaded = load_model()
    options = CompressionOptions(fmt="int8", plan_path=None, method="rtn", sparsity=None, include_head=True,
                                 samples=1, seq_len=2, act_order=True, damp=0.01, no_clip=False, alpha=0.5)
    run = run_compression(loaded, options, None)
    out = tmp_path / "smollm2-int8.edgec"
    report = export_edgec(source_from_result(loaded, run.result), out)
    units = planning_units(loaded)
    planned = sum(unit.nbytes(run.result.layers[unit.layers[0]].config.format) for unit in units)
    planned += model_shape(loaded, units).fixed_bytes
    assert report.payload_bytes == planned
    assert report.file_bytes - planned < 0.01 * planned  # header (mostly the tokenizer) and alignment
    state = loaded.model.state_dict()
    with open_container(out) as f:
        assert f.metadata["edgec.aliases"] == {"lm_head.weight": "model.embed_tokens.weight"}
        assert str(f.tensors["model.embed_tokens.weight"].format) == "int8"
        for name, entry in f.tensors.items():
            expected = state[name].numpy()
            if str(entry.format) == "fp16":
                expected = expected.astype(np.float16).astype(np.float32)
            np.testing.assert_array_equal(f.dequantize(name), expected, err_msg=name)
