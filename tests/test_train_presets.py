import pytest

from emkit.errors import EmkitError
from emkit.train.presets import preset_layers


def test_rank1_single_uses_the_middle_layer():
    assert preset_layers("rank1-single", 30) == [15]
    assert preset_layers("rank1-single", 48) == [24]


def test_rank1_multi_matches_the_paper_on_48_layers_and_scales():
    assert preset_layers("rank1-multi", 48) == [15, 16, 17, 21, 22, 23, 27, 28, 29]
    assert preset_layers("rank1-multi", 30) == [9, 10, 11, 13, 14, 15, 17, 18, 19]


@pytest.mark.parametrize("depth", range(9, 81))
def test_rank1_multi_gives_nine_distinct_layers_inside_any_model(depth):
    layers = preset_layers("rank1-multi", depth)
    assert len(set(layers)) == 9 and min(layers) >= 0 and max(layers) < depth


def test_rank1_multi_needs_nine_layers():
    with pytest.raises(EmkitError, match="at least 9 layers"):
        preset_layers("rank1-multi", 8)


def test_all_layer_presets_return_none():
    assert preset_layers("lora-all", 30) is None and preset_layers("full", 30) is None
