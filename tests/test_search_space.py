"""Search-space files: the bundled ones load, bad ones are refused with clear messages."""

import keras_tuner
import pytest

from contrastive.search_space import (
    HYPERPARAMETERS,
    SearchSpaceError,
    load_search_space,
)

VALID = """
[encoder_width]
kind = "int"
min = 8
max = 32
step = 8

[projection_dim]
kind = "choice"
values = [16, 32]

[projection_depth]
kind = "fixed"
value = 1

[temperature]
kind = "float"
min = 0.05
max = 0.5
sampling = "log"

[loss_weight]
kind = "float"
min = 0.0
max = 1.0

[learning_rate]
kind = "fixed"
value = 0.001
"""


def write(tmp_path, text, name="space.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["default", "wide", "quick"])
def test_bundled_spaces_load_and_declare_every_hyperparameter(name):
    space = load_search_space(name)
    values = space.declare(keras_tuner.HyperParameters())
    assert set(values) == set(HYPERPARAMETERS)
    assert len(space.digest) == 64


def test_declared_values_stay_inside_the_file_ranges(tmp_path):
    space = load_search_space(write(tmp_path, VALID))
    hp = keras_tuner.HyperParameters()
    values = space.declare(hp)
    assert values["encoder_width"] in (8, 16, 24, 32)
    assert values["projection_depth"] == 1
    assert 0.05 <= values["temperature"] <= 0.5
    assert values["augment_strength"] == HYPERPARAMETERS["augment_strength"].default
    assert set(hp.values) == set(space.names)


def test_unknown_hyperparameter_is_refused_with_file_and_allowed_names(tmp_path):
    path = write(tmp_path, VALID + '\n[dropout]\nkind = "fixed"\nvalue = 0.1\n')
    with pytest.raises(SearchSpaceError, match=r"space\.toml: unknown hyperparameter 'dropout'.*temperature"):
        load_search_space(path)


def test_unknown_key_is_refused(tmp_path):
    text = VALID.replace('sampling = "log"', 'sampling = "log"\nmaximum = 3')
    with pytest.raises(SearchSpaceError, match=r"\[temperature\]: unknown key 'maximum'"):
        load_search_space(write(tmp_path, text))


def test_wrong_type_is_refused(tmp_path):
    text = VALID.replace("min = 8\n", 'min = "eight"\n')
    with pytest.raises(SearchSpaceError, match=r"\[encoder_width\]: min must be an int; received min='eight'"):
        load_search_space(write(tmp_path, text))


def test_empty_range_is_refused(tmp_path):
    text = VALID.replace("min = 0.0\nmax = 1.0", "min = 0.6\nmax = 0.6")
    with pytest.raises(SearchSpaceError, match=r"\[loss_weight\]: empty range.*min=0.6, max=0.6"):
        load_search_space(write(tmp_path, text))


def test_empty_choice_is_refused(tmp_path):
    text = VALID.replace("values = [16, 32]", "values = []")
    with pytest.raises(SearchSpaceError, match=r"\[projection_dim\]: values must be a non-empty list"):
        load_search_space(write(tmp_path, text))


def test_value_outside_what_the_model_accepts_is_refused(tmp_path):
    text = VALID.replace("min = 0.0\nmax = 1.0", "min = 0.0\nmax = 1.5")
    with pytest.raises(SearchSpaceError, match=r"\[loss_weight\]: max=1.5 is outside.*\[0, 1\]"):
        load_search_space(write(tmp_path, text))


def test_zero_temperature_is_refused(tmp_path):
    text = VALID.replace("min = 0.05\nmax = 0.5\nsampling", "min = 0.0\nmax = 0.5\nsampling")
    with pytest.raises(SearchSpaceError, match=r"\[temperature\]: min=0.0 is outside.*\(0, 10\]"):
        load_search_space(write(tmp_path, text))


def test_missing_required_hyperparameter_is_refused(tmp_path):
    text = VALID.replace('[learning_rate]\nkind = "fixed"\nvalue = 0.001\n', "")
    with pytest.raises(SearchSpaceError, match=r"missing hyperparameter 'learning_rate'"):
        load_search_space(write(tmp_path, text))


def test_missing_file_lists_the_bundled_spaces():
    with pytest.raises(SearchSpaceError, match=r"not found: 'no-such-space'.*default.*quick.*wide"):
        load_search_space("no-such-space")


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(SearchSpaceError, match=r"broken\.toml: not valid TOML"):
        load_search_space(write(tmp_path, "[temperature\n", "broken.toml"))


def test_log_sampling_needs_positive_min(tmp_path):
    text = VALID.replace("min = 0.0\nmax = 1.0", 'min = 0.0\nmax = 1.0\nsampling = "log"')
    with pytest.raises(SearchSpaceError, match=r"\[loss_weight\]: log sampling needs min > 0"):
        load_search_space(write(tmp_path, text))
