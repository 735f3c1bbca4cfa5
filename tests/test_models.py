"""Models: fusion shapes, loss (1) against a hand computation, frozen stages, local weights."""
import math

import pytest
import torch

from models import FUSIONS, PoseRegressor, SiameseSync, accuracy, backbone, freeze, fuse, ssl_loss


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_fusion_gives_one_sync_and_one_flip_logit_per_pair(fusion):
    torch.manual_seed(0)
    net = SiameseSync("resnet18", fusion).eval()
    x1, x2 = torch.randn(6, 3, 64, 64), torch.randn(6, 3, 64, 64)
    with torch.no_grad():
        s, f = net(x1, x2)
    assert s.shape == (6,) and f.shape == (6,)
    assert net.omega_sync.in_features == (1024 if fusion == "concat" else 512)
    z = fuse(torch.randn(4, 8), torch.randn(4, 8), fusion)
    assert (z >= 0).all() and z.shape == (4, 16 if fusion == "concat" else 8)


def test_product_fusion_is_zero_where_the_features_disagree_in_sign():
    f1, f2 = torch.tensor([[1.0, -2.0, 3.0]]), torch.tensor([[2.0, 1.0, -1.0]])
    assert fuse(f1, f2, "mult").tolist() == [[2.0, 0.0, 0.0]]


def test_loss_1_ignores_untrained_labels_exactly_as_written():
    # one triplet: synchronized, unsynchronized, flipped
    sync_logit = torch.tensor([2.0, -1.0, 5.0])
    flip_logit = torch.tensor([-3.0, 7.0, 0.5])
    sync_label = torch.tensor([1, 0, -1])
    flip_label = torch.tensor([0, -1, 1])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    F1 = [sig(v) for v in sync_logit.tolist()]           # P(synchronized)
    F2 = [1 - sig(v) for v in flip_logit.tolist()]       # P(not flipped)
    by_hand = -(math.log(F1[0]) + math.log(F2[0]) + math.log(1 - F1[1]) + math.log(1 - F2[2]))
    got = ssl_loss(sync_logit, flip_logit, sync_label, flip_label)
    assert got.item() == pytest.approx(by_hand, rel=1e-6)
    # the untrained entries (sync head on the flipped pair, flip head on the unsynchronized
    # pair) can take any value without changing the loss
    changed = ssl_loss(torch.tensor([2.0, -1.0, -40.0]), torch.tensor([-3.0, 40.0, 0.5]), sync_label, flip_label)
    assert changed.item() == pytest.approx(by_hand, rel=1e-6)
    assert accuracy(sync_logit, sync_label) == (2, 2) and accuracy(flip_logit, flip_label) == (2, 2)


@pytest.mark.parametrize("spec, prefixes", [
    ("none", ()),
    ("stages:3", ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")),
    ("blocks:3", ("conv1.", "bn1.", "layer1.0.", "layer1.1.", "layer2.0.")),
    ("stages:0", ("conv1.", "bn1.")),
])
def test_freeze_modes_freeze_exactly_the_named_parameters_and_batch_norm_statistics(spec, prefixes):
    from train.config import frozen_modules

    torch.manual_seed(0)
    net = PoseRegressor("resnet18")
    net.train()
    freeze(net.phi, frozen_modules("resnet18", spec))
    for name, p in net.phi.named_parameters():
        assert p.requires_grad != name.startswith(prefixes), name
    before = {k: v.clone() for k, v in net.phi.state_dict().items()}
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    loss = net(torch.randn(4, 3, 64, 64)).pow(2).mean()  # a training step: batch norms see the batch
    loss.backward()
    opt.step()
    after = net.phi.state_dict()
    for k in before:
        if k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(before[k], after[k]) == k.startswith(prefixes), k  # weights and running stats
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 16, 3)


def test_freeze_specs_are_checked():
    from train.config import FinetuneConfig, frozen_modules

    assert frozen_modules("resnet50", "blocks:4")[-1] == "layer2.0"  # ResNet-50 has 3 blocks in layer1
    for bad in ("stages:5", "blocks:9", "layers:2", "3"):
        with pytest.raises(ValueError, match="freeze"):
            FinetuneConfig(freeze=bad)
    assert FinetuneConfig(freeze=3).freeze == "stages:3"  # configs saved with the old integer


def test_weights_load_from_a_local_file_and_bad_files_are_named(tmp_path):
    torch.manual_seed(1)
    src = backbone("resnet18")
    path = tmp_path / "r18.pth"
    torch.save({**src.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, path)
    net = backbone("resnet18", path)
    assert torch.equal(net.conv1.weight, src.conv1.weight)
    with pytest.raises(ValueError, match="not found"):
        backbone("resnet18", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="not a resnet50 state dict"):
        backbone("resnet50", path)


def test_signed_features_are_the_pooled_features_before_the_last_relu():
    """ReLU of the pre-activation map is layer4's output, whose pooling is the usual feature; the
    signed features (its pooling without the ReLU) take negative values, the usual ones never."""
    from models.siamese import pre_activation

    torch.manual_seed(0)
    for arch in ("resnet18n", "resnet50"):
        net = SiameseSync(arch, "mult", signed=True).eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            pre, usual, signed = pre_activation(net.phi, x), net.phi(x), net.features(x)
            assert torch.allclose(torch.relu(pre).mean((2, 3)), usual, atol=1e-5)
            assert torch.allclose(pre.mean((2, 3)), signed)
            assert (signed < 0).any() and (usual >= 0).all()
            sync, flip = net(x[:1], x[1:])
        assert sync.shape == flip.shape == (1,)
