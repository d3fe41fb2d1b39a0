"""torchlight.config (YAML `base:` inheritance, overrides, validation) and torchlight.util imports."""
import os

import pytest

from processor.base import ALIASES, Processor
from torchlight.config import ConfigError, load_yaml, parse_overrides, set_dotted, validate
from torchlight.util import import_class, instantiate


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- load_yaml


def test_base_chain_relative_paths_and_deep_merge(tmp_path):
    # grand <- parent <- child, each `base:` relative to the file that names it
    write(tmp_path / "a" / "b" / "grand.yaml",
          "base_lr: 0.1\nnum_epoch: 10\n"
          "model_args:\n  hidden: 16\n  graph_args: {layout: ntu-rgb+d, strategy: spatial}\n")
    write(tmp_path / "a" / "parent.yaml",
          "base: b/grand.yaml\nnum_epoch: 20\nmodel_args:\n  graph_args: {strategy: uniform}\n")
    child = write(tmp_path / "child.yaml",
                  "base: a/parent.yaml\nbatch_size: 8\nmodel_args:\n  hidden: 32\n")
    cfg = load_yaml(str(child))
    assert cfg == {
        "base_lr": 0.1,
        "num_epoch": 20,  # parent overrides grand
        "batch_size": 8,
        "model_args": {"hidden": 32, "graph_args": {"layout": "ntu-rgb+d", "strategy": "uniform"}},
    }
    assert "base" not in cfg


def test_list_of_bases_later_wins_child_wins(tmp_path):
    write(tmp_path / "one.yaml", "x: 1\ny: 1\nsec: {a: 1, b: 1}\n")
    write(tmp_path / "two.yaml", "y: 2\nsec: {b: 2, c: 2}\n")
    child = write(tmp_path / "child.yaml", "base: [one.yaml, two.yaml]\nsec: {c: 3}\nz: 3\n")
    assert load_yaml(str(child)) == {"x": 1, "y": 2, "z": 3, "sec": {"a": 1, "b": 2, "c": 3}}


def test_child_replaces_non_dict_values(tmp_path):
    write(tmp_path / "b.yaml", "step: [10, 20]\nsec: {a: 1}\n")
    child = write(tmp_path / "c.yaml", "base: b.yaml\nstep: [5]\nsec: null\n")
    assert load_yaml(str(child)) == {"step": [5], "sec": None}


def test_base_loop_names_the_file(tmp_path):
    a = write(tmp_path / "loop_a.yaml", "base: loop_b.yaml\nx: 1\n")
    write(tmp_path / "loop_b.yaml", "base: loop_a.yaml\ny: 1\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(str(a))
    assert "loop_a.yaml" in str(e.value)
    assert "loop" in str(e.value)


def test_self_loop(tmp_path):
    a = write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="self.yaml"):
        load_yaml(str(a))


def test_missing_file_and_missing_base(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as e:
        load_yaml(str(missing))
    assert str(missing) in str(e.value)
    child = write(tmp_path / "child.yaml", "base: gone/base.yaml\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(str(child))
    assert os.path.join(str(tmp_path), "gone", "base.yaml") in str(e.value)


def test_invalid_yaml(tmp_path):
    bad = write(tmp_path / "bad.yaml", "a: [1, 2\nb: : :\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(str(bad))
    assert str(bad) in str(e.value)
    assert "YAML" in str(e.value)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n"])
def test_non_mapping_top_level(tmp_path, text):
    bad = write(tmp_path / "list.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_yaml(str(bad))
    assert str(bad) in str(e.value)
    assert "mapping" in str(e.value)


def test_empty_file_is_empty_config(tmp_path):
    assert load_yaml(str(write(tmp_path / "empty.yaml", ""))) == {}


# --------------------------------------------------------------------------- parse_overrides


def test_parse_overrides():
    pairs = parse_overrides(["--a.b", "3", "--c=x", "--flag", "--lst", "[1,2]", "--f", "0.5",
                             "--num-worker", "4", "--last"])
    assert pairs == [("a.b", 3), ("c", "x"), ("flag", True), ("lst", [1, 2]), ("f", 0.5),
                     ("num_worker", 4), ("last", True)]
    assert isinstance(pairs[0][1], int)


def test_parse_overrides_equals_keeps_rest_and_rejects_positional():
    assert parse_overrides(["--a=b=c", "--e=[1, 2]"]) == [("a", "b=c"), ("e", [1, 2])]
    with pytest.raises(ConfigError, match="stray"):
        parse_overrides(["--a", "1", "stray"])


# --------------------------------------------------------------------------- set_dotted


@pytest.fixture(scope="module")
def defaults():
    return Processor.defaults()


def test_set_dotted_types_follow_default(defaults):
    cfg = {}
    set_dotted(cfg, "base_lr", 1, defaults)
    assert cfg["base_lr"] == 1.0 and isinstance(cfg["base_lr"], float)
    set_dotted(cfg, "step", 80, defaults)
    assert cfg["step"] == [80]
    set_dotted(cfg, "step", [30, 60], defaults)
    assert cfg["step"] == [30, 60]
    set_dotted(cfg, "nesterov", "false", defaults)
    assert cfg["nesterov"] is False
    set_dotted(cfg, "nesterov", "true", defaults)
    assert cfg["nesterov"] is True
    set_dotted(cfg, "num_epoch", "12", defaults)
    assert cfg["num_epoch"] == 12 and isinstance(cfg["num_epoch"], int)
    set_dotted(cfg, "weight_decay", "1e-4", defaults)
    assert cfg["weight_decay"] == 1e-4


def test_set_dotted_through_parse_overrides(defaults):
    cfg = {}
    for key, value in parse_overrides(["--base_lr", "1", "--step", "80", "--nesterov", "false"]):
        set_dotted(cfg, key, value, defaults)
    assert cfg == {"base_lr": 1.0, "step": [80], "nesterov": False}
    assert isinstance(cfg["base_lr"], float)


def test_set_dotted_nested_follows_existing_value(defaults):
    cfg = {"model_args": {"hidden_dim": 256, "dropout": 0.5}}
    set_dotted(cfg, "model_args.dropout", 0, defaults)
    assert cfg["model_args"]["dropout"] == 0.0 and isinstance(cfg["model_args"]["dropout"], float)
    set_dotted(cfg, "model_args.graph_args.layout", "nw-ucla", defaults)
    assert cfg["model_args"]["graph_args"] == {"layout": "nw-ucla"}
    set_dotted(cfg, "wandb.enable", True, defaults)  # a nested default dict not yet in cfg
    assert cfg["wandb"]["enable"] is True


def test_set_dotted_unknown_key_suggests(defaults):
    with pytest.raises(ConfigError) as e:
        set_dotted({}, "base_lrr", 0.1, defaults)
    assert "base_lrr" in str(e.value)
    assert "`base_lr`" in str(e.value)


def test_set_dotted_wrong_type_names_key(defaults):
    with pytest.raises(ConfigError) as e:
        set_dotted({}, "num_epoch", "many", defaults)
    assert "num_epoch" in str(e.value)
    with pytest.raises(ConfigError) as e:
        set_dotted({}, "nesterov", "maybe", defaults)
    assert "nesterov" in str(e.value)
    with pytest.raises(ConfigError) as e:
        set_dotted({"model_args": {"num_class": 60}}, "model_args.num_class", "sixty", defaults)
    assert "model_args.num_class" in str(e.value)


def test_set_dotted_into_non_mapping(defaults):
    with pytest.raises(ConfigError, match="base_lr"):
        set_dotted({"base_lr": 0.1}, "base_lr.x", 1, defaults)


# --------------------------------------------------------------------------- validate


def test_validate_fills_defaults_and_coerces(defaults):
    out = validate({"base_lr": "1e-4", "step": 80, "model": "net.st_gcn.Model"}, defaults, ALIASES)
    assert out["base_lr"] == pytest.approx(1e-4) and isinstance(out["base_lr"], float)
    assert out["step"] == [80]
    assert out["model"] == "net.st_gcn.Model"
    assert set(out) == set(defaults)
    for key in ("batch_size", "weight_decay", "wandb", "momentum"):
        assert out[key] == defaults[key]


def test_validate_does_not_mutate_defaults(defaults):
    before = Processor.defaults()
    out = validate({}, defaults, ALIASES)
    out["wandb"]["enable"] = True
    out["step"].append(3)
    assert Processor.defaults() == before
    assert defaults == before


def test_yaml_scientific_notation_roundtrip(tmp_path, defaults):
    # YAML 1.1 reads `1e-4` (no dot) as a string; validate must still give a float
    cfg = load_yaml(str(write(tmp_path / "c.yaml", "weight_decay: 1e-4\nbase_lr: 5e-3\n")))
    assert isinstance(cfg["weight_decay"], str)
    out = validate(cfg, defaults, ALIASES)
    assert out["weight_decay"] == pytest.approx(1e-4)
    assert out["base_lr"] == pytest.approx(5e-3)


def test_validate_unknown_key(defaults):
    with pytest.raises(ConfigError) as e:
        validate({"base_lrr": 0.1}, defaults, ALIASES, source="my.yaml")
    msg = str(e.value)
    assert "my.yaml" in msg and "base_lrr" in msg and "`base_lr`" in msg


def test_validate_wrong_type_names_key(defaults):
    with pytest.raises(ConfigError, match="batch_size"):
        validate({"batch_size": "lots"}, defaults, ALIASES)


def test_validate_alias(defaults):
    assert validate({"view": "bone"}, defaults, ALIASES)["stream"] == "bone"
    assert validate({"view": "bone", "stream": "bone"}, defaults, ALIASES)["stream"] == "bone"
    with pytest.raises(ConfigError) as e:
        validate({"view": "bone", "stream": "motion"}, defaults, ALIASES)
    assert "view" in str(e.value) and "stream" in str(e.value)


# --------------------------------------------------------------------------- torchlight.util


def test_instantiate_unknown_kwarg_suggests():
    with pytest.raises(ConfigError) as e:
        instantiate("net.st_gcn.Model", {"hiden_channels": 8}, "model_args")
    msg = str(e.value)
    assert "model_args" in msg and "hiden_channels" in msg and "`hidden_channels`" in msg


def test_instantiate_builds():
    model = instantiate("net.st_gcn.Model", {"hidden_channels": 4, "hidden_dim": 8}, "model_args", num_class=5)
    assert model.fc.out_features == 5 and model.hidden_dim == 8


def test_import_class_errors():
    import net.st_gcn

    assert import_class("net.st_gcn.Model") is net.st_gcn.Model
    with pytest.raises(ConfigError) as e:
        import_class("net.st_gnc.Model")
    assert "net.st_gnc" in str(e.value)
    with pytest.raises(ConfigError) as e:
        import_class("nosuchpackage.Model")
    assert "nosuchpackage" in str(e.value)
    with pytest.raises(ConfigError) as e:
        import_class("net.st_gcn.Modle")
    assert "Modle" in str(e.value) and "`Model`" in str(e.value)
    with pytest.raises(ConfigError):
        import_class("Model")
