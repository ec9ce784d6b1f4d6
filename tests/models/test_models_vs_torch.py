"""The models agree with PyTorch re-implementations: same weights in, same outputs and gradients.

The torch networks below are written from the papers' descriptions, independently of
``minidl.models``; parameters are copied across in definition order (both frameworks list
them in the order the layers are created), so a wrongly placed BatchNorm, activation or skip
shows up as a mismatch.
"""
import numpy as np
import pytest

from minidl import models
from minidl.layers import BatchNorm2d

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """torch's CPU kernels fight for cores with the other test worker (the grouped convolutions
    of mobilenet slow down a hundredfold); one thread is plenty for these small problems."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _norm(f, bn):
    return nn.BatchNorm2d(f) if bn else nn.Identity()


class TorchProcessingBlock(nn.Module):
    """conv (no bias) -> [BN] -> lrelu -> conv (no bias) -> [BN] -> (+ x) -> lrelu."""

    def __init__(self, f, bn, residual):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(f, f, 3, padding=1, bias=False), _norm(f, bn)
        self.conv2, self.bn2 = nn.Conv2d(f, f, 3, padding=1, bias=False), _norm(f, bn)
        self.residual = residual

    def forward(self, x):
        out = self.bn2(self.conv2(F.leaky_relu(self.bn1(self.conv1(x)))))
        return F.leaky_relu(out + x if self.residual else out)


class TorchReductionBlock(nn.Module):
    """conv (bias) -> [BN] -> lrelu -> avg pool 2 -> conv (bias) -> [BN] -> lrelu; no skip."""

    def __init__(self, f, bn):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(f, f, 3, padding=1), _norm(f, bn)
        self.conv2, self.bn2 = nn.Conv2d(f, f, 3, padding=1), _norm(f, bn)

    def forward(self, x):
        out = F.avg_pool2d(F.leaky_relu(self.bn1(self.conv1(x))), 2)
        return F.leaky_relu(self.bn2(self.conv2(out)))


class TorchVGG38(nn.Module):
    """The coursework's VGG: entry conv (no bias) -> BN -> lrelu, stages, global mean, linear."""

    def __init__(self, c_in, f, blocks, stages, classes, bn=True, residual=True):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c_in, f, 3, padding=1, bias=False), nn.BatchNorm2d(f)
        layers = []
        for _ in range(stages):
            layers += [TorchProcessingBlock(f, bn, residual) for _ in range(blocks)]
            layers.append(TorchReductionBlock(f, bn))
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(f, classes)

    def forward(self, x):
        out = self.stages(F.leaky_relu(self.bn(self.conv(x))))
        return self.fc(out.mean(dim=(2, 3)))


class TorchBasicBlock(nn.Module):
    """He et al.'s BasicBlock; ``shortcut=False``: the plain block, relu(bn2(conv2(...)))."""

    def __init__(self, c_in, c_out, stride, shortcut=True):
        super().__init__()
        self.plain = not shortcut
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if shortcut and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out if self.plain else out + self.shortcut(x))


class TorchResNet18(nn.Module):
    def __init__(self, c_in, w, classes, shortcut=True):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w)
        blocks, c = [], w
        for i in range(4):
            for b in range(2):
                blocks.append(TorchBasicBlock(c, w * 2 ** i, 2 if i > 0 and b == 0 else 1,
                                              shortcut))
                c = w * 2 ** i
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(c, classes)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TorchMobileNet(nn.Module):
    CFG = [64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024]

    def __init__(self, c_in, alpha, classes):
        super().__init__()
        c = int(round(32 * alpha))
        layers = [nn.Conv2d(c_in, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        for item in self.CFG:
            out, stride = item if isinstance(item, tuple) else (item, 1)
            out = int(round(out * alpha))
            layers += [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(), nn.Conv2d(c, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(c, classes)

    def forward(self, x):
        return self.linear(self.features(x).mean(dim=(2, 3)))


class TorchVGG16(nn.Module):
    """The SfNet preprint's VGG-16 (Table 1, its listing): [conv3x3, BN, ReLU] x (2, 2, 3, 3, 3)
    with a 2x2 max pool closing each of the five scales, the final map flattened, then
    [Linear, BN, ReLU] x 2 and a Linear; ``w`` channels in the first scale, ``hidden`` FC width."""

    def __init__(self, c_in, w, hidden, classes, final_hw=1):
        super().__init__()
        layers = []
        for n, c in zip((2, 2, 3, 3, 3), (w, 2 * w, 4 * w, 8 * w, 8 * w)):
            for _ in range(n):
                layers += [nn.Conv2d(c_in, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU()]
                c_in = c
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(c_in * final_hw ** 2, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class TorchLeNet5(nn.Module):
    """LeCun's LeNet-5: conv5 (pad 2) -> avg pool -> tanh -> conv5 -> avg pool -> tanh ->
    C5 conv5 -> tanh -> (mean over what is left of the map) -> FC-84 -> tanh -> FC."""

    def __init__(self, c_in, classes):
        super().__init__()
        self.c1, self.c3 = nn.Conv2d(c_in, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.c5, self.f6, self.out = nn.Conv2d(16, 120, 5), nn.Linear(120, 84), nn.Linear(84, classes)

    def forward(self, x):
        x = torch.tanh(F.avg_pool2d(self.c1(x), 2))
        x = torch.tanh(F.avg_pool2d(self.c3(x), 2))
        x = torch.tanh(self.c5(x)).mean(dim=(2, 3))
        return self.out(torch.tanh(self.f6(x)))


class TorchCReLU(nn.Module):
    """Shang et al.'s CReLU: cat(relu(x), relu(-x)) along the channels."""

    def forward(self, x):
        return torch.cat([F.relu(x), F.relu(-x)], 1)


ACTS = {"relu": (nn.ReLU, 1), "elu": (nn.ELU, 1), "crelu": (TorchCReLU, 2)}


def _lrn():
    return nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # AlexNet's (alpha / size)


class TorchVGGVariant(nn.Module):
    """A VGG from ``scales`` (lists of (channels, kernel)): conv (padded) -> [BN | LRN] -> act per
    layer; each scale closed by a 2x2 max pool ("max"), a 3x3/2 max pool padded by 1
    ("max_overlap"), or its last conv at stride 2 ("stride"); then the flattened map through
    [Linear, act] x 2, Linear ("fc"), or a global mean and a Linear ("gap"). A CReLU doubles
    the channels the next layer takes."""

    def __init__(self, c_in, scales, classes, hidden=8, norm="none", act="relu",
                 downsample="max", head="fc", final_hw=1):
        super().__init__()
        make_act, mult = ACTS[act]
        layers = []
        for scale in scales:
            for j, (c, k) in enumerate(scale):
                stride = 2 if downsample == "stride" and j == len(scale) - 1 else 1
                layers.append(nn.Conv2d(c_in, c, k, stride, k // 2))
                layers += {"bn": [nn.BatchNorm2d(c)], "lrn": [_lrn()], "none": []}[norm]
                layers.append(make_act())
                c_in = mult * c
            layers += {"max": [nn.MaxPool2d(2)], "max_overlap": [nn.MaxPool2d(3, 2, 1)],
                       "stride": []}[downsample]
        self.features = nn.Sequential(*layers)
        if head == "gap":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(c_in, classes))
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * final_hw ** 2, hidden),
                                      make_act(), nn.Linear(mult * hidden, hidden), make_act(),
                                      nn.Linear(mult * hidden, classes))

    def forward(self, x):
        return self.head(self.features(x))


def _vgg19_scales(w, k=3):
    return [[(w, k)] * 2, [(2 * w, k)] * 2, [(4 * w, k)] * 4, [(8 * w, k)] * 4, [(8 * w, k)] * 4]


def _vgg14_mixed_scales(w):
    return [[(w, 5), (w, 3)], [(2 * w, 5), (2 * w, 3)], [(4 * w, 5), (4 * w, 3), (4 * w, 3)],
            [(8 * w, 5), (8 * w, 3)], [(8 * w, 5), (8 * w, 3)]]


class TorchResNetVariant(nn.Module):
    """He et al.'s CIFAR ResNet with ``blocks`` BasicBlocks per stage of w, 2w, 4w channels;
    ``pool``: down-sample by a 2x2 max pool opening the stage (stride-1 convs) instead of the
    stride-2 first conv; a CReLU doubles what the next conv and the shortcut take."""

    def __init__(self, c_in, w, blocks, classes, pool=False, act="relu"):
        super().__init__()
        make_act, mult = ACTS[act]
        self.stem = nn.Sequential(nn.Conv2d(c_in, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  make_act())
        layers, c = [], mult * w
        for i, n in enumerate(blocks):
            out = w * 2 ** i
            if i > 0 and pool:
                layers.append(nn.MaxPool2d(2))
            for b in range(n):
                stride = 2 if i > 0 and b == 0 and not pool else 1
                layers.append(TorchActBlock(c, out, stride, make_act, mult))
                c = mult * out
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(c, classes)

    def forward(self, x):
        return self.linear(self.layers(self.stem(x)).mean(dim=(2, 3)))


class TorchActBlock(nn.Module):
    """BasicBlock with any activation: act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, c_in, c_out, stride, make_act, mult):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1, self.act1 = nn.BatchNorm2d(c_out), make_act()
        self.conv2 = nn.Conv2d(mult * c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.act = make_act()

    def forward(self, x):
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act(out + self.shortcut(x))


class TorchAlexNet(nn.Module):
    """Krizhevsky et al.'s net in one tower, for 32x32: conv11 (pad 5) -> ReLU -> LRN -> max
    pool 3/2 -> conv5 -> ReLU -> LRN -> pool -> conv3 x 3 (ReLU) -> pool -> [FC, ReLU] x 2, FC."""

    def __init__(self, c_in, channels, hidden, classes):
        c1, c2, c3, c4, c5 = channels
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(c_in, c1, 11, 1, 5), nn.ReLU(), _lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, 1, 2), nn.ReLU(), _lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, 1, 1), nn.ReLU(), nn.Conv2d(c3, c4, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(c4, c5, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(nn.Linear(c5 * 9, hidden), nn.ReLU(),
                                        nn.Linear(hidden, hidden), nn.ReLU(),
                                        nn.Linear(hidden, classes))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _copy_into_torch(ours, theirs):
    """Copy our parameters and BatchNorm running statistics into the torch model, in order."""
    params = list(theirs.parameters())
    buffers = [b for n, b in theirs.named_buffers() if not n.endswith("num_batches_tracked")]
    ours_p, ours_b = ours.parameters(), [b for _, b in ours.named_buffers()]
    assert [tuple(p.shape) for p in params] == [p.shape for p in ours_p]
    assert [tuple(b.shape) for b in buffers] == [b.shape for b in ours_b]
    with torch.no_grad():
        for t, p in zip(params, ours_p):
            t.copy_(torch.from_numpy(np.asarray(p.data, dtype=np.float64)))
        for t, b in zip(buffers, ours_b):
            t.copy_(torch.from_numpy(np.asarray(b, dtype=np.float64)))


def _randomise_batchnorm(model, rng):
    """Non-trivial BN affine parameters and running statistics, so misplaced BNs are visible."""
    for _, layer in model.named_layers():
        if isinstance(layer, BatchNorm2d):
            shape = layer.weight.shape
            layer.weight.data = rng.uniform(0.5, 1.5, shape)
            layer.bias.data = rng.normal(0.0, 0.2, shape)
            layer.running_mean = rng.normal(0.0, 0.1, shape)
            layer.running_var = rng.uniform(0.5, 1.5, shape)


# case -> (model name, options, the torch network for in_channels)
CASES = {
    "vgg38-bn-res": ("vgg38", dict(num_filters=4, num_blocks_per_stage=2, bn=True, residual=True),
                     lambda c_in: TorchVGG38(c_in, 4, 2, 3, 6)),
    "vgg38-bn": ("vgg38", dict(num_filters=4, num_blocks_per_stage=2, bn=True),
                 lambda c_in: TorchVGG38(c_in, 4, 2, 3, 6, residual=False)),
    "vgg38-res": ("vgg38", dict(num_filters=4, num_blocks_per_stage=2, residual=True),
                  lambda c_in: TorchVGG38(c_in, 4, 2, 3, 6, bn=False)),
    "vgg38": ("vgg38", dict(num_filters=4, num_blocks_per_stage=2),
              lambda c_in: TorchVGG38(c_in, 4, 2, 3, 6, bn=False, residual=False)),
    "vgg08": ("vgg08", dict(num_filters=4),
              lambda c_in: TorchVGG38(c_in, 4, 0, 3, 6, bn=False, residual=False)),
    "resnet18": ("resnet18", dict(width=4), lambda c_in: TorchResNet18(c_in, 4, 6)),
    "resnet18-plain": ("resnet18", dict(width=4, shortcut=False),
                       lambda c_in: TorchResNet18(c_in, 4, 6, shortcut=False)),
    "vgg16": ("vgg16", dict(width=4, hidden=8), lambda c_in: TorchVGG16(c_in, 4, 8, 6)),
    "lenet5-lecun": ("lenet5", dict(pool="avg", activation="tanh"),
                     lambda c_in: TorchLeNet5(c_in, 6)),
    "mobilenet": ("mobilenet", dict(width_mult=0.125),
                  lambda c_in: TorchMobileNet(c_in, 0.125, 6)),
    # issue 11: the survey's and slides' variants (dropout off: masks differ between frameworks)
    "vgg19-5x5-lrn-crelu": ("vgg19", dict(width=4, hidden=8, kernel_size=5, norm="lrn",
                                          activation="crelu", dropout=0.0),
                            lambda c_in: TorchVGGVariant(c_in, _vgg19_scales(4, 5), 6,
                                                         norm="lrn", act="crelu")),
    "vgg19-bn-stride-gap": ("vgg19", dict(width=4, hidden=8, norm="bn", downsample="stride",
                                          head="gap", dropout=0.0),
                            lambda c_in: TorchVGGVariant(c_in, _vgg19_scales(4), 6, norm="bn",
                                                         downsample="stride", head="gap")),
    "vgg19-overlap-elu": ("vgg19", dict(width=4, hidden=8, downsample="max_overlap",
                                        activation="elu", dropout=0.0),
                          lambda c_in: TorchVGGVariant(c_in, _vgg19_scales(4), 6, act="elu",
                                                       downsample="max_overlap")),
    "vgg14-mixed": ("vgg14_mixed", dict(width=4, hidden=8, dropout=0.0),
                    lambda c_in: TorchVGGVariant(c_in, _vgg14_mixed_scales(4), 6)),
    "resnet32-max-crelu": ("resnet32", dict(width=2, downsample="max", activation="crelu"),
                           lambda c_in: TorchResNetVariant(c_in, 2, (5, 5, 5), 6, pool=True,
                                                           act="crelu")),
    "resnet32": ("resnet32", dict(width=2),
                 lambda c_in: TorchResNetVariant(c_in, 2, (5, 5, 5), 6)),
    "alexnet": ("alexnet", dict(width=6, hidden=8, dropout=0.0),
                lambda c_in: TorchAlexNet(c_in, (6, 16, 24, 24, 16), 8, 6)),
    "mlp": ("mlp", dict(hidden=(8, 5), image_size=32),
            lambda c_in: nn.Sequential(nn.Flatten(), nn.Linear(c_in * 32 * 32, 8), nn.ReLU(),
                                       nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 6))),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_forward_and_backward_match_torch(case, training):
    name, options, make_torch = CASES[case]
    rng = np.random.default_rng(0)
    ours = models.build(name, in_channels=3, num_classes=6, seed=1, **options).astype(np.float64)
    _randomise_batchnorm(ours, rng)
    theirs = make_torch(3).double()
    _copy_into_torch(ours, theirs)
    ours.train(training)
    theirs.train(training)

    x = rng.standard_normal((4, 3, 32, 32))
    dout = rng.standard_normal((4, 6))
    y = ours(x)
    ours.zero_grad()
    dx = ours.backward(dout)

    xt = torch.from_numpy(x).requires_grad_(True)
    yt = theirs(xt)
    yt.backward(torch.from_numpy(dout))

    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-7, atol=1e-10)
    for (n, p), t in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=n)
