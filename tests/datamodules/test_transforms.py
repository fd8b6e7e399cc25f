import pytest
import torch

from lit_automl.datamodules import Compose, Cutout, Normalize, RandomCrop, RandomHorizontalFlip


def _ramp(c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.arange(1, c * h * w + 1, dtype=torch.float32).reshape(c, h, w)


def test_normalize_per_channel():
    img = torch.stack([torch.full((4, 4), 0.5), torch.full((4, 4), 1.0), torch.zeros(4, 4)])
    out = Normalize([0.5, 0.0, 1.0], [0.25, 2.0, 0.5])(img)
    assert out.shape == img.shape and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.zeros(4, 4))
    assert torch.allclose(out[1], torch.full((4, 4), 0.5))
    assert torch.allclose(out[2], torch.full((4, 4), -2.0))
    assert torch.equal(img[0], torch.full((4, 4), 0.5))  # input untouched


@pytest.mark.parametrize(
    "mean, std, match",
    [
        ([0.5, 0.5], [0.2], "equal length, got 2 and 1"),
        ([0.5], [0.0], r"std must be finite and > 0 .* got \[0.0\]"),
        ([0.5], [-1.0], "std must be finite and > 0"),
        ([], [], "non-empty"),
        ([float("nan")], [1.0], "mean must be finite"),
    ],
)
def test_normalize_validation(mean, std, match):
    with pytest.raises(ValueError, match=match):
        Normalize(mean, std)


def test_normalize_channel_mismatch_and_dtype():
    with pytest.raises(ValueError, match="3 channel statistics but the image has 1 channels"):
        Normalize([0.0] * 3, [1.0] * 3)(torch.zeros(1, 4, 4))
    with pytest.raises(TypeError, match="floating-point tensor, got dtype torch.uint8"):
        Normalize([0.0], [1.0])(torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"3-D C x H x W tensor, got shape \(2, 1, 4, 4\)"):
        Normalize([0.0], [1.0])(torch.zeros(2, 1, 4, 4))


def test_random_crop_is_a_shifted_window_with_zero_padding():
    torch.manual_seed(0)
    img = _ramp(h=32, w=32)
    crop = RandomCrop(32, padding=4)
    padded = torch.nn.functional.pad(img, (4, 4, 4, 4))
    offsets = set()
    for _ in range(200):
        out = crop(img)
        assert out.shape == (3, 32, 32)
        # find the unique (top, left) offset that reproduces the crop from the zero-padded image
        matches = [
            (t, l) for t in range(9) for l in range(9) if torch.equal(padded[:, t : t + 32, l : l + 32], out)
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 40  # offsets are spread over the 9x9 grid, corners included eventually
    assert min(t for t, _ in offsets) == 0 and max(t for t, _ in offsets) == 8


def test_random_crop_rectangular_and_seeded():
    img = _ramp(h=10, w=12)
    torch.manual_seed(3)
    a = RandomCrop((6, 5))(img)
    torch.manual_seed(3)
    b = RandomCrop((6, 5))(img)
    assert a.shape == (3, 6, 5) and torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 0}, "size must be a positive int, got 0"),
        ({"size": (32,)}, r"\(height, width\) pair, got \(32,\)"),
        ({"size": 32, "padding": -1}, "padding must be an int >= 0, got -1"),
        ({"size": 2.5}, "size must be a positive int, got 2.5"),
    ],
)
def test_random_crop_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomCrop(**kwargs)


def test_random_crop_larger_than_image():
    with pytest.raises(ValueError, match=r"size \(40, 40\) exceeds the padded image size \(36, 36\)"):
        RandomCrop(40, padding=2)(torch.zeros(3, 32, 32))


def test_horizontal_flip_probabilities():
    img = _ramp()
    assert torch.equal(RandomHorizontalFlip(1.0)(img), img.flip(-1))
    assert torch.equal(RandomHorizontalFlip(0.0)(img), img)
    torch.manual_seed(0)
    flips = sum(bool(torch.equal(RandomHorizontalFlip()(img), img.flip(-1))) for _ in range(400))
    assert 150 < flips < 250
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]"):
            RandomHorizontalFlip(bad)


def test_cutout_zeroes_one_clipped_square():
    torch.manual_seed(0)
    img = torch.ones(3, 32, 32)
    cut = Cutout(16)
    areas = []
    for _ in range(300):
        out = cut(img)
        zero = out[0] == 0
        assert torch.equal(zero, out[1] == 0) and torch.equal(zero, out[2] == 0)  # same square on every channel
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert 8 <= h <= 16 and 8 <= w <= 16  # centre is inside, so at least half the side survives clipping
        assert int(zero.sum()) == h * w  # one axis-aligned rectangle
        assert torch.equal(rows, torch.arange(rows[0], rows[0] + h))
        areas.append(h * w)
    assert max(areas) == 256 and min(areas) < 256  # both unclipped and border-clipped squares occur
    assert torch.equal(img, torch.ones(3, 32, 32))  # input untouched


def test_cutout_odd_length_and_validation():
    torch.manual_seed(1)
    out = Cutout(3)(torch.ones(1, 64, 64))
    assert int((out == 0).sum()) in (4, 6, 9)
    for bad in (0, -4, 2.0):
        with pytest.raises(ValueError, match="length must be a positive int"):
            Cutout(bad)


def test_compose_applies_in_order_and_validates():
    img = torch.ones(1, 2, 2)
    out = Compose([Normalize([1.0], [0.5]), lambda x: x + 3])(img)
    assert torch.equal(out, torch.full((1, 2, 2), 3.0))
    with pytest.raises(TypeError, match=r"transforms\[1\] must be callable, got 5"):
        Compose([Cutout(2), 5])
    with pytest.raises(TypeError, match="sequence of callables"):
        Compose(Cutout(2))
    assert "Cutout(length=2)" in repr(Compose([Cutout(2)]))


def test_pipeline_reproducible_under_global_seed():
    pipeline = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(), Cutout(3)])
    img = _ramp()
    torch.manual_seed(42)
    first = [pipeline(img) for _ in range(5)]
    torch.manual_seed(42)
    second = [pipeline(img) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(first[0], f) for f in first[1:])
