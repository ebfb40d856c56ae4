"""Config loading: overrides, coercion and errors that name the key and the fix."""

import pytest

from ajepa.config import ConfigError, load_config, patch_grid


def test_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=3e-4", "optim.steps=100", "optim.warmup=10", "model.preset=tiny"])
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.steps == 100 and cfg.optim.epochs is None
    assert cfg.model.encoder_dim == 96  # filled by the tiny preset


def test_string_numbers_from_yaml_are_coerced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: '1e-4'\n  steps: 50\n  warmup: 5\n")
    assert load_config(path).optim.lr == pytest.approx(1e-4)


def test_preset_fields_can_be_overridden():
    cfg = load_config(None, ["model.preset=base", "model.predictor_depth=8"])
    assert (cfg.model.encoder_dim, cfg.model.predictor_depth, cfg.model.predictor_dim) == (768, 8, 384)


def test_typo_key_is_named():
    with pytest.raises(ConfigError, match=r"optim\.lrr: unknown key"):
        load_config(None, ["optim.lrr=1"])


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"loss\.kind: must be one of .*smooth_l1.*got 'huber'"):
        load_config(None, ["loss.kind=huber"])


def test_out_of_range_value_is_named():
    with pytest.raises(ConfigError, match=r"masking\.num_blocks: Input should be greater than or equal to 1"):
        load_config(None, ["masking.num_blocks=0"])


def test_unknown_strategy_lists_strategies():
    with pytest.raises(ConfigError, match=r"masking\.strategy: must be one of .*multiblock.*got 'foo'"):
        load_config(None, ["masking.strategy=foo"])


def test_parameter_of_another_strategy_is_rejected():
    with pytest.raises(ConfigError, match=r"masking\.num_blocks: not a parameter of masking strategy 'random'"):
        load_config(None, ["masking.strategy=random", "masking.num_blocks=3"])


def test_heads_must_divide_width():
    with pytest.raises(ConfigError, match=r"model\.encoder_dim=100 is not divisible by model\.encoder_heads=12"):
        load_config(None, ["model.encoder_dim=100"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["optim.lr"])


@pytest.mark.parametrize("frames,grid", [(1024, (8, 64)), (512, (8, 32)), (100, (8, 6)), (128, (8, 8))])
def test_patch_grid_follows_frames(frames, grid):
    assert patch_grid(128, frames, (16, 16)) == grid


def test_a_warmup_longer_than_a_shortened_run_is_clipped_with_a_note():
    """`ajepa-train experiments/tiny.yaml optim.steps=60` (warmup 160) runs: 10 % warmup."""
    from ajepa.config import warmup_clip_note, warmup_steps
    cfg = load_config("experiments/tiny.yaml", ["optim.steps=60"]).optim
    assert warmup_steps(cfg, steps_per_epoch=105) == 6
    assert "optim.warmup=160 steps is not shorter than the run (60 steps): warming up for 6" in \
        warmup_clip_note(cfg, 105)
    kept = load_config("experiments/tiny.yaml", ["optim.steps=600"]).optim
    assert warmup_steps(kept, 105) == 160 and warmup_clip_note(kept, 105) is None
    epochs = load_config(None, ["optim.epochs=2", "optim.warmup=3"]).optim
    assert warmup_steps(epochs, steps_per_epoch=50) == 10


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ConfigError, match=r"optim\.lr: Input should be a finite number"):
        load_config(None, [f"optim.lr={value}"])


def test_an_empty_experiment_file_is_refused(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here yet\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the file sets nothing.*experiments/tiny\.yaml"):
        load_config(path)


def test_duplicate_keys_in_an_experiment_file_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("optim:\n  lr: 1.0e-3\n  steps: 10\n  lr: 2.0e-3\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml.*'lr'.*line 2.*line 4"):
        load_config(path)


def test_an_override_that_is_not_yaml_names_itself():
    with pytest.raises(ConfigError, match=r"override 'optim\.lr=\[1e-3': the value is not valid YAML"):
        load_config(None, ["optim.lr=[1e-3"])
