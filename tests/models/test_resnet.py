"""ResNet trunks: weights from local files, clear errors, freezing by stage."""

import pytest
import torch

from retrievalkit.models import build_image_encoder
from retrievalkit.models.resnet import load_state_dict_file

torchvision = pytest.importorskip("torchvision")


def _images(n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory):
    """A random resnet18 state dict saved as a torchvision ``.pth`` file."""
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    for module in reference.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "r18.pth"
    torch.save(reference.state_dict(), path)
    reference.fc = torch.nn.Identity()
    return path, reference.eval()


def test_weights_round_trip_from_a_state_dict_and_a_checkpoint(reference_file, tmp_path):
    path, reference = reference_file
    expected = reference(_images())
    encoder = build_image_encoder("resnet18", weights_path=str(path)).eval()
    assert torch.allclose(encoder(_images()), expected, atol=1e-5)
    state = torch.load(path, weights_only=True)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    encoder = build_image_encoder("resnet18", weights_path=str(tmp_path / "ckpt.pth")).eval()
    assert torch.allclose(encoder(_images()), expected, atol=1e-5)


def test_weight_file_errors_name_the_file(reference_file, tmp_path):
    path, _ = reference_file
    with pytest.raises(ValueError, match=r"r18.pth: does not fit resnet50"):
        build_image_encoder("resnet50", weights_path=str(path))
    state = torch.load(path, weights_only=True)
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial.pth: does not fit resnet18: 1 missing"):
        build_image_encoder("resnet18", weights_path=str(tmp_path / "partial.pth"))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth: not a PyTorch weights file"):
        load_state_dict_file(tmp_path / "bad.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth: expected a state dict"):
        load_state_dict_file(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_state_dict_file(tmp_path / "nowhere.pth")


def _bn_stats(module):
    return [b.clone() for n, b in module.named_buffers() if "running" in n]


def test_frozen_trunk_gets_no_gradients_and_keeps_bn_statistics():
    encoder = build_image_encoder("resnet18", trainable=False).train()
    assert not encoder.trainable and not encoder.net.bn1.training
    before = _bn_stats(encoder)
    out = encoder(_images())
    assert not out.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(encoder)))
    encoder.set_trainable(True)
    assert encoder.net.bn1.training and encoder.net.layer4[1].bn2.training
    encoder(_images()).sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(before, _bn_stats(encoder)))


def test_partial_freezing_by_stage():
    encoder = build_image_encoder("resnet18").train()
    encoder.freeze(up_to="layer2")
    encoder(_images()).sum().backward()
    for name, param in encoder.net.named_parameters():
        frozen = name.split(".")[0] in ("conv1", "bn1", "layer1", "layer2")
        assert param.requires_grad is not frozen, name
        assert (param.grad is None) is frozen, name
    assert not encoder.net.layer2[0].bn1.training and encoder.net.layer3[0].bn1.training
    encoder.eval().train()  # a later train() keeps the frozen part in eval
    assert not encoder.net.bn1.training and encoder.net.layer4[0].bn1.training
    encoder.freeze(None)
    assert encoder.trainable and all(p.requires_grad for p in encoder.parameters())
    with pytest.raises(ValueError, match="cannot freeze up to 'layer5'"):
        encoder.freeze("layer5")
