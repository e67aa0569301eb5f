import pytest

from edgeinfer.core.errors import ConfigError
from edgeinfer.devices import Provider, builtin_profiles, get_profile, load_profile_file

REQUIRED = {"x86-laptop", "x86-avx512-vnni", "raspberry-pi-5", "jetson-orin", "snapdragon-npu",
            "apple-m-series", "intel-npu"}


def test_builtin_profiles_cover_the_required_devices_and_parse():
    profiles = builtin_profiles()
    assert REQUIRED <= set(profiles)
    assert profiles["snapdragon-npu"].providers == (Provider.QNN,)
    assert profiles["snapdragon-npu"].static_shapes
    assert profiles["jetson-orin"].providers[0] is Provider.TENSORRT


def test_profile_with_unknown_key_names_file_key_and_allowed_keys(tmp_path):
    bad = tmp_path / "board.toml"
    bad.write_text('name = "board"\nproviders = ["cpu"]\nthreds = 4\n')
    with pytest.raises(ConfigError) as e:
        load_profile_file(bad)
    assert str(bad) in str(e.value) and "'threds'" in str(e.value) and "threads" in str(e.value)


def test_profile_with_bad_provider_lists_valid_names(tmp_path):
    bad = tmp_path / "board.toml"
    bad.write_text('name = "board"\nproviders = ["tpu"]\n')
    with pytest.raises(ConfigError, match="'providers'.*unknown execution provider 'tpu'.*qnn"):
        load_profile_file(bad)


def test_profile_with_bad_value_types_fails(tmp_path):
    bad = tmp_path / "board.toml"
    bad.write_text('name = "board"\nproviders = ["cpu"]\nthreads = "many"\n')
    with pytest.raises(ConfigError, match="'threads'"):
        load_profile_file(bad)
    bad.write_text('name = "board"\nproviders = ["cpu"]\nprecisions = ["int3"]\n')
    with pytest.raises(ConfigError, match="'precisions'.*int3"):
        load_profile_file(bad)


def test_unknown_device_name_lists_builtin_profiles():
    with pytest.raises(ConfigError, match="x86-laptop"):
        get_profile("toaster")
