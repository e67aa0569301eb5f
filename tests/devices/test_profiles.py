import pytest

from edgeinfer.core.errors import ConfigError
from edgeinfer.devices import Provider, builtin_profiles, get_profile, load_profile_file

REQUIRED = {
    "x86-laptop",
    "x86-avx512-vnni",
    "raspberry-pi-5",
    "jetson-orin",
    "snapdragon-npu",
    "apple-m-series",
    "intel-npu",
}


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
    # A quoted "false" where llama.cpp's repack switch wants a boolean.
    bad.write_text('name = "board"\nproviders = ["cpu"]\n[llm]\nrepack = "false"\n')
    with pytest.raises(ConfigError, match="repack"):
        load_profile_file(bad)
    for body, key in (
        ('kv_type = "q9"', "llm.kv_type"),
        ('kquant = "Q4_K_X"', "llm.kquant"),
        ("n_ctx = 8", "llm.n_ctx"),
    ):
        bad.write_text(f'name = "board"\nproviders = ["cpu"]\n[llm]\n{body}\n')
        with pytest.raises(ConfigError, match=f"'{key}'"):
            load_profile_file(bad)


def test_unknown_device_name_lists_builtin_profiles():
    with pytest.raises(ConfigError, match="x86-laptop"):
        get_profile("toaster")


# ---------------------------------------------------------------------------------- every field is used


def _profile(tmp_path, body: str):
    path = tmp_path / "board.toml"
    path.write_text('name = "board"\nproviders = ["cpu"]\n' + body)
    return path


def test_static_shapes_profile_makes_export_fix_the_shapes(capsys, tmp_path):
    import json

    import onnx

    from tests.conftest import run_cli

    out = tmp_path / "m.onnx"
    code, stdout, stderr = run_cli(
        capsys,
        "export",
        "edgeinfer.examples.digits:lenet",
        "-o",
        out,
        "--json",
        "--device",
        _profile(tmp_path, "static_shapes = true\n"),
    )
    assert code == 0, stderr
    assert json.loads(stdout)["meta"]["dynamic_axes"] == {}
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_value > 0 and not d.dim_param for d in dims)


def test_precisions_the_device_lacks_are_warned_about(capsys, lenet_onnx, tmp_path):
    from tests.conftest import run_cli

    code, _, stderr = run_cli(
        capsys,
        "quantize",
        lenet_onnx,
        "-o",
        tmp_path / "q.onnx",
        "--method",
        "fp16",
        "--device",
        _profile(tmp_path, 'precisions = ["fp32", "int8"]\n'),
    )
    assert code == 0 and "not fp16" in stderr


def test_memory_budget_of_the_device_is_checked_in_bench(capsys, lenet_onnx, tmp_path):
    from tests.conftest import run_cli

    code, _, stderr = run_cli(
        capsys, "bench", lenet_onnx, "--runs", "2", "--warmup", "0", "--device", _profile(tmp_path, "memory_mb = 16\n")
    )
    assert code == 0 and "exceeds device board's memory_mb of 16" in stderr


def test_kquant_of_the_device_is_the_default_gguf_type(capsys, smollm2, tmp_path):
    import json

    from tests.conftest import run_cli

    code, stdout, stderr = run_cli(
        capsys,
        "quantize",
        smollm2,
        "-o",
        tmp_path / "q.gguf",
        "--json",
        "--device",
        _profile(tmp_path, '[llm]\nkquant = "Q8_0"\n'),
    )
    assert code == 0, stderr
    assert "Q8_0" in json.loads(stdout)["after"]["tensor_types"]


def test_the_isa_is_read_from_x86_flags_and_arm_features():
    from edgeinfer.devices import host_isa

    x86 = "processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni amx_int8 amx_bf16 avx512_bf16\n"
    assert host_isa(x86) == ["avx2", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16"]
    arm = "processor : 0\nFeatures : fp asimd asimddp i8mm\n"
    assert host_isa(arm) == ["arm_dotprod", "arm_i8mm"]
    assert host_isa("flags : sse4_2 avx\n") == []  # a CPU without these: reduce_range matters there


def test_quantize_and_optimize_build_the_same_quantization_config_for_every_shipped_profile():
    """One profile means one thing: the config `quantize --device P --method M` builds equals the
    one `optimize --device P` measures for M (the profile's [quant] table, one set of defaults)."""
    from edgeinfer.compress.onnx_quant import OnnxQuantConfig
    from edgeinfer.devices import builtin_profiles, get_profile
    from edgeinfer.pipelines.optimize.onnx import candidate_recipes
    from edgeinfer.pipelines.quantize import build_config

    checked = 0
    for profile in builtin_profiles().values():
        for name, steps in candidate_recipes(profile, None, has_calib=True):
            for pass_name, cfg in steps:
                if pass_name != "quantize-onnx":
                    continue
                searched = OnnxQuantConfig.from_dict(cfg)
                per_channel = None if name.endswith("-qnn") else searched.per_channel  # the variant's one choice
                built = build_config(searched.method, get_profile(profile.name), calib_method="minmax",
                                     activation_type=None, weight_type=None, per_channel=per_channel,
                                     symmetric=False, reduce_range=None, exclude=((), ()),
                                     block_size=searched.block_size)  # fmt: skip
                assert built == searched, (profile.name, name)
                checked += 1
    assert checked >= 10
    jetson = get_profile("jetson-orin")
    assert build_config("static", jetson, calib_method="minmax", activation_type=None, weight_type=None,
                        per_channel=None, symmetric=False, reduce_range=None, exclude=((), ()),
                        block_size=128).activation_type == "int8"  # fmt: skip


AMX_XEON = "".join(
    f"processor : {i}\nphysical id : 0\ncore id : {i // 2}\nmodel name : Intel(R) Xeon(R)\n"
    "flags : fpu avx2 avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16\n\n"
    for i in range(4)
)  # 2 cores with 2 hardware threads each
AVX2_LAPTOP = "processor : 0\ncore id : 0\nflags : fpu avx2\n\nprocessor : 1\ncore id : 1\nflags : fpu avx2\n"
ARM_BOARD = "processor : 0\nFeatures : fp asimd asimddp i8mm bf16\n\nprocessor : 1\nFeatures : fp asimd asimddp\n"


def test_the_host_profile_follows_this_cpus_isa_cores_and_runtimes():
    from edgeinfer.devices import Precision, host_profile, physical_cores

    xeon = host_profile(AMX_XEON, openvino=True)
    assert xeon.name == "host" and xeon.threads == 2 == physical_cores(AMX_XEON)  # cores, not SMT threads
    assert xeon.precisions == (Precision.FP32, Precision.BF16, Precision.INT8)
    assert xeon.quant.reduce_range is False and xeon.openvino_device == "CPU"
    assert "amx_bf16" in xeon.description and "2 cores" in xeon.description
    laptop = host_profile(AVX2_LAPTOP, openvino=False)
    assert Precision.BF16 not in laptop.precisions and laptop.quant.reduce_range is True  # no VNNI: 7-bit weights
    assert laptop.openvino_device is None and laptop.threads == 2
    board = host_profile(ARM_BOARD, openvino=True)
    assert Precision.BF16 in board.precisions and board.quant.reduce_range is False
    here = get_profile("host")
    assert here.name == "host" and here.providers == (Provider.CPU,) and here.memory_mb and here.memory_mb > 0


def test_an_openvino_table_names_a_device_openvino_has(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('name = "x"\nproviders = ["cpu"]\n[openvino]\ndevice = "TPU"\n')
    with pytest.raises(ConfigError, match="openvino.device.*'TPU' is not one of CPU, GPU, NPU"):
        load_profile_file(path)
    path.write_text('name = "x"\nproviders = ["cpu"]\n[openvino]\nprecision = "bf16"\n')
    with pytest.raises(ConfigError, match="openvino.precision.*unknown key; allowed: device"):
        load_profile_file(path)
    path.write_text('name = "x"\nproviders = ["cpu"]\n[openvino]\ndevice = "NPU"\n')
    assert load_profile_file(path).openvino_device == "NPU"
    assert get_profile("intel-npu").openvino_device == "NPU" and get_profile("x86-laptop").openvino_device == "CPU"
