"""The sweep's cost estimate follows the design axes that change the work per step."""

from ajepa.config import load_config
from ajepa.sweep.cost import trial_cost


def flops(*overrides):
    return trial_cost(load_config(None, ["model.preset=tiny", "optim.steps=10", "frontend.target_frames=192",
                                         *overrides])).flops


def test_per_block_predictor_and_masks_per_clip_cost_more_targets_only_less():
    shared = flops("model.predictor_attention=shared_context")
    assert flops("model.predictor_attention=per_block") > shared  # context once per block (4)
    assert flops("model.predictor_attention=shared_context", "target.input=targets_only") < shared
    assert flops("model.predictor_attention=shared_context", "masking.masks_per_clip=2") > shared
