"""The contracts shared by the sweep and analysis (ajepa.contracts): one loader, one label
format, one error type, so both sides read a sweep file the same way."""

from __future__ import annotations

import pytest

from ajepa.contracts import SpecError, format_label, load_yaml, read_yaml_mapping
from ajepa.sweep.spec import SpecError as SweepSpecError
from ajepa.sweep.spec import load_sweep
from analysis.source import read_spec


def test_duplicate_keys_are_refused_naming_the_key_and_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\noptim:\n  lr: 1.0e-3\n  steps: 5\n  lr: 2.0e-3\n")
    with pytest.raises(SpecError, match=r"duplicate key 'lr' at line 5 \(first at line 3\)"):
        read_yaml_mapping(path, SpecError, "sweep file")


def test_the_same_key_in_two_mappings_and_merge_keys_are_fine():
    tree = load_yaml("a: {x: 1}\nb: {x: 2}\nbase: &b {y: 1}\nc:\n  <<: *b\n  y: 2\n")
    assert tree["a"]["x"] == 1 and tree["b"]["x"] == 2 and tree["c"] == {"y": 2}


def test_exponent_floats_and_labels_agree_between_sweep_and_analysis(tmp_path):
    assert load_yaml("lr: 1e-4")["lr"] == pytest.approx(1e-4)
    assert format_label(1e-4) == "0.0001" and format_label(0.123456) == "0.1235" and format_label(3) == "3"
    spec = tmp_path / "sweeps" / "lr.yaml"
    spec.parent.mkdir()
    spec.write_text("name: lr\naxes:\n  - name: lr\n    key: optim.lr\n    values: [1e-4, 3e-4]\n")
    assert read_spec(spec).axes[0].labels == ("0.0001", "0.0003")  # what the sweep tags its runs with


def test_a_sweep_file_with_a_duplicate_key_fails_before_anything_runs(tmp_path):
    spec = tmp_path / "sweeps" / "dup.yaml"
    spec.parent.mkdir()
    spec.write_text("name: dup\nseeds: [0]\nseeds: [1]\n")
    with pytest.raises(SweepSpecError, match=r"not valid YAML: .*duplicate key 'seeds' at line 3 \(first at line 2\)"):
        load_sweep(spec)
    with pytest.raises(SpecError, match="duplicate key 'seeds'"):  # analysis refuses it alike
        read_spec(spec)


def test_the_sweep_error_is_the_contract_error_and_a_config_error():
    from ajepa.config import ConfigError

    assert issubclass(SweepSpecError, SpecError) and issubclass(SweepSpecError, ConfigError)


def test_atomic_writes_leave_the_old_file_on_failure_and_no_temporary_files(tmp_path):
    from ajepa.io_utils import atomic_open, atomic_write_text

    target = tmp_path / "state.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1
