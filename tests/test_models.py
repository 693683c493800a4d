import pytest
import torch

import sparta
from sparta import (
    SpartaError,
    build_model,
    export_sparta,
    import_sparta,
    load_checkpoint,
    save_checkpoint,
    sparta_sites,
)

FAST = ["smallcnn", "resnet18", "preact_resnet18", "resnet20"]


@pytest.mark.parametrize("name", sparta.model_names())
@pytest.mark.parametrize("shape", [(1, 28), (3, 32)])
def test_every_model_forward_backward(name, shape):
    channels, size = shape
    torch.manual_seed(0)
    model = build_model(name, "sparta", num_classes=7, in_channels=channels, image_size=size)
    x = torch.rand(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    if name in FAST:
        out.sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("act", ["relu", "swish", "softplus", "gelu", "elu", "prelu", "frelu"])
def test_smallcnn_with_each_activation(act):
    model = build_model("smallcnn", act, 10, 1, image_size=28)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_smallcnn_is_the_usual_size():
    model = build_model("smallcnn", "relu", 10, 1, image_size=28)
    assert sum(p.numel() for p in model.parameters()) == 312_202


def test_resnet20_is_he_et_al_cifar_net():
    """3 stages x 3 basic blocks, 16/32/64 wide: about 0.27M parameters (He et al. 2016, Table 6)."""
    model = build_model("resnet20", "relu", 10, 3)
    assert model.stage_names == ("stem", "layer1", "layer2", "layer3")
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 3]
    params = sum(p.numel() for p in model.parameters())
    assert 0.26e6 < params < 0.28e6
    sites = sparta_sites(build_model("resnet20", "sparta", 10, 3, share="layer"))
    assert {stage: len(found) for stage, found in sites.items()} == {"stem": 1, "layer1": 6, "layer2": 6, "layer3": 6}


def test_normalisation_inside_the_model():
    model = build_model("smallcnn", "relu", 10, 1, image_size=28, mean=[0.3], std=[0.2])
    x = torch.rand(1, 1, 28, 28)
    assert torch.allclose(model.normalize(x), (x - 0.3) / 0.2)


def test_wrong_image_size_is_clear():
    model = build_model("smallcnn", "relu", 10, 1, image_size=28)
    with pytest.raises(SpartaError, match="built for 28 x 28"):
        model(torch.rand(1, 1, 32, 32))


def test_unknown_model_is_clear():
    with pytest.raises(SpartaError, match="unknown model 'vgg'"):
        build_model("vgg")


def test_stages_are_exposed():
    model = build_model("resnet18", "sparta", 10, 3)
    assert list(model.stages()) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert list(sparta_sites(model)) == ["stem", "layer1", "layer2", "layer3", "layer4"]


@pytest.mark.parametrize("share, expected", [("layer", 17), ("stage", 5), ("network", 1)])
def test_sharing_modes_count_distinct_functions(share, expected):
    model = build_model("resnet18", "sparta", 10, 3, share=share)
    sites = [m for stage in sparta_sites(model).values() for m in stage]
    assert len(sites) == 17
    assert len({id(m.phi) for m in sites}) == expected
    assert len({id(m.log_beta) for m in sites}) == expected


def test_depthwise_cannot_share_across_widths():
    with pytest.raises(SpartaError, match="pooled"):
        build_model("resnet18", "sparta", 10, 3, share="network", phi="depthwise")


def test_export_import_round_trip_and_freeze(tmp_path):
    torch.manual_seed(0)
    source = build_model("resnet18", "sparta", 10, 3)
    for site in [s for stage in sparta_sites(source).values() for s in stage]:
        torch.nn.init.normal_(site.phi.conv2.weight)
    export_sparta(source, tmp_path / "fn.safetensors")
    target = build_model("resnet34", "sparta", 10, 3)
    import_sparta(target, tmp_path / "fn.safetensors", freeze=True)
    for stage in source.stages():
        src, dst = sparta_sites(source)[stage][0], sparta_sites(target)[stage][0]
        assert torch.equal(src.phi.conv2.weight, dst.phi.conv2.weight)
        assert not dst.phi.conv2.weight.requires_grad and not dst.log_beta.requires_grad


def test_network_function_moves_into_any_cnn(tmp_path):
    source = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="network")
    export_sparta(source, tmp_path / "fn.safetensors")
    target = build_model("resnet34", "sparta", 10, 3, share="network")
    import_sparta(target, tmp_path / "fn.safetensors")
    assert target(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_a_constant_phi_function_moves_into_any_cnn_and_only_into_a_constant_phi(tmp_path):
    source = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="network", phi="constant")
    with torch.no_grad():
        sparta_sites(source)["block1"][0].phi.t.fill_(-0.25)
    export_sparta(source, tmp_path / "fn.safetensors")
    target = build_model("resnet20", "sparta", 10, 1, share="network", phi="constant")  # other widths
    import_sparta(target, tmp_path / "fn.safetensors")
    sites = [s for stage in sparta_sites(target).values() for s in stage]
    assert all(s.phi.t.item() == -0.25 and not s.phi.t.requires_grad for s in sites)
    with pytest.raises(SpartaError, match="has phi 'constant' at stage 'network', the model has phi 'pooled'"):
        import_sparta(build_model("resnet20", "sparta", 10, 1, share="network"), tmp_path / "fn.safetensors")


def test_a_function_file_without_its_phi_kinds_still_imports(tmp_path):
    """Files written before the phi kind was recorded: the kinds are told by whether the weights fit."""
    from safetensors.torch import load_file, save_file

    source = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="network")
    export_sparta(source, tmp_path / "fn.safetensors")
    save_file(load_file(tmp_path / "fn.safetensors"), tmp_path / "old.safetensors", {"sparta": '{"share": "network"}'})
    import_sparta(build_model("resnet20", "sparta", 10, 1, share="network"), tmp_path / "old.safetensors")
    with pytest.raises(SpartaError, match="does not fit stage 'network'"):
        import_sparta(
            build_model("resnet20", "sparta", 10, 1, share="network", phi="constant"), tmp_path / "old.safetensors"
        )


def test_mismatched_stages_are_clear(tmp_path):
    source = build_model("smallcnn", "sparta", 10, 1, image_size=28)
    export_sparta(source, tmp_path / "fn.safetensors")
    with pytest.raises(SpartaError, match=r"has stages .* the model has"):
        import_sparta(build_model("resnet18", "sparta", 10, 3), tmp_path / "fn.safetensors")


def test_frozen_depthwise_function_keeps_its_batchnorm_statistics(tmp_path):
    source = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="layer", phi="depthwise")
    export_sparta(source, tmp_path / "fn.safetensors")
    target = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="layer", phi="depthwise")
    import_sparta(target, tmp_path / "fn.safetensors", freeze=True)
    site = sparta_sites(target)["block1"][0]
    before = site.phi.norm.running_mean.clone()
    target.train()
    target(torch.rand(4, 1, 28, 28) * 5)
    assert target.training and not site.phi.training
    assert torch.equal(site.phi.norm.running_mean, before)


def test_dataset_fills_the_input_facts_and_given_values_win():
    model = build_model("smallcnn", "relu", dataset="fashion-mnist")
    spec = model.build_spec
    assert (spec["in_channels"], spec["image_size"], spec["num_classes"]) == (1, 28, 10)
    assert spec["mean"] != [0.5] and model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert build_model("smallcnn", "relu", dataset="fashion-mnist", num_classes=4).build_spec["num_classes"] == 4


def test_wrong_channel_count_is_refused_not_broadcast():
    model = build_model("resnet20", "relu", num_classes=10, in_channels=3)
    with pytest.raises(SpartaError, match="takes N x 3 x H x W images"):
        model(torch.rand(2, 1, 32, 32))
    x, y = torch.rand(8, 1, 32, 32), torch.zeros(8, dtype=torch.long)
    with pytest.raises(SpartaError, match=r"got 1-channel images of 32 x 32$"):  # not the probe's N = 1
        sparta.evaluate(model, x, y, ["clean"], eps=0.1)


def test_activation_by_class():
    from torch import nn

    model = build_model("smallcnn", nn.SiLU, dataset="digits")
    assert model.build_spec["activation"] == "swish"
    assert any(isinstance(m, nn.SiLU) for m in model.modules())
    assert build_model("smallcnn", sparta.Sparta, dataset="digits").build_spec["activation"] == "sparta"


def test_activation_by_any_callable_as_timm_act_layer(tmp_path):
    """A callable of one's own: called with the channel count when it takes one, else bare;
    the model then records no build spec and loads back only into a model you pass."""
    from torch import nn

    tanh = build_model("smallcnn", nn.Tanh, dataset="digits")
    assert any(isinstance(m, nn.Tanh) for m in tanh.modules()) and tanh.build_spec is None
    sharp = build_model("smallcnn", lambda c: sparta.Sparta(c, beta0=8.0), dataset="digits", share="network")
    sites = [s for stage in sparta_sites(sharp).values() for s in stage]
    assert len(sites) == 6 and len({id(s.log_beta) for s in sites}) == 1  # shared, as asked
    assert float(sites[0].beta) == pytest.approx(8.0)
    save_checkpoint(sharp, tmp_path / "m.safetensors")
    with pytest.raises(SpartaError, match="model of your own"):
        load_checkpoint(tmp_path / "m.safetensors")
    with pytest.raises(SpartaError, match=r"returned int, not an nn\.Module"):
        build_model("smallcnn", lambda c: c, dataset="digits")
    with pytest.raises(SpartaError, match="unknown activation"):
        build_model("smallcnn", "tanhh", dataset="digits")


def test_a_shared_depthwise_phi_keeps_statistics_per_site(tmp_path):
    """share='stage' shares the depthwise phi's weights, not its BatchNorm statistics: sites
    of a stage see different inputs, and one running mean would blend them."""
    torch.manual_seed(0)
    model = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="stage", phi="depthwise")
    layer_model = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="layer", phi="depthwise")
    stage = next(sites for sites in sparta_sites(model).values() if len(sites) > 1)
    first, second = stage[0], stage[1]
    assert first.phi is not second.phi
    assert first.phi.conv.weight is second.phi.conv.weight and first.phi.norm.weight is second.phi.norm.weight
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in layer_model.parameters())
    model.train()
    model(torch.rand(8, 1, 28, 28))
    assert not torch.allclose(first.phi.norm.running_mean, second.phi.norm.running_mean)
    # the statistics of each site travel with the function, and land on the same site
    export_sparta(model, tmp_path / "fn.safetensors")
    target = build_model("smallcnn", "sparta", 10, 1, image_size=28, share="stage", phi="depthwise")
    import_sparta(target, tmp_path / "fn.safetensors", freeze=True)
    for src, dst in zip(
        [s for g in sparta_sites(model).values() for s in g], [s for g in sparta_sites(target).values() for s in g]
    ):
        assert torch.equal(src.phi.norm.running_mean, dst.phi.norm.running_mean)
        assert torch.equal(src.phi.norm.running_var, dst.phi.norm.running_var)
    # and a checkpoint keeps them too
    save_checkpoint(model, tmp_path / "model.safetensors")
    loaded, _ = load_checkpoint(tmp_path / "model.safetensors")
    assert torch.equal(
        sparta_sites(loaded)["block2"][1].phi.norm.running_mean, sparta_sites(model)["block2"][1].phi.norm.running_mean
    )
