import hashlib
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import lit_automl.datamodules.omniglot as omniglot_module
from lit_automl.datamodules import OMNIGLOT_MD5, OmniglotDataModule, download_omniglot, read_omniglot
from lit_automl.datamodules.omniglot import omniglot_character_split, omniglot_characters

# A tiny copy of the official layout: 3 alphabets, 16 characters, 4 drawings each.
LAYOUT = {
    "images_background": {"Alpha": 5, "Beta": 5},
    "images_evaluation": {"Gamma": 6},
}
PER_CHARACTER = 4
N_CHARS = 16
TINY = dict(num_train=10, num_val=5, k_shot=1, q_queries=3, tasks_per_batch=2, train_batches=2, val_tasks=3,
            test_tasks=2)


def _drawing(rng: random.Random) -> Image.Image:
    """A 105x105 1-bit image like the originals: white background (1), black strokes (0)."""
    im = Image.new("1", (105, 105), 1)
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        pts = [(rng.randrange(105), rng.randrange(105)) for _ in range(3)]
        draw.line(pts, fill=0, width=rng.randrange(2, 6))
    return im


def build_tree(root: Path, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    paths, char_id = [], 0
    for subset, alphabets in LAYOUT.items():
        for alphabet, n_chars in alphabets.items():
            for c in range(1, n_chars + 1):
                char_id += 1
                folder = root / subset / alphabet / f"character{c:02d}"
                folder.mkdir(parents=True)
                for drawer in range(1, PER_CHARACTER + 1):
                    path = folder / f"{char_id:04d}_{drawer:02d}.png"
                    _drawing(rng).save(path)
                    paths.append(path)
    return paths


def reference_pixels(path: Path) -> np.ndarray:
    """1 - pixel/255 of the grey image resized to 28x28 with LANCZOS (Finn et al.'s preprocessing)."""
    grey = Image.open(path).convert("L").resize((28, 28), resample=Image.LANCZOS)
    return 1.0 - np.asarray(grey, dtype=np.float32) / 255.0


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "omniglot"
    return root, build_tree(root)


def _zip_subsets(src: Path, server: Path) -> dict:
    server.mkdir()
    md5 = {}
    for subset in LAYOUT:
        archive = server / f"{subset}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted((src / subset).rglob("*")):
                zf.write(path, path.relative_to(src).as_posix())
        md5[subset] = hashlib.md5(archive.read_bytes()).hexdigest()
    return md5


def test_read_layout_resize_and_invert(tree):
    root, paths = tree
    chars = omniglot_characters(root)
    assert len(chars) == N_CHARS
    assert chars[:4] == ["images_background/Alpha/character01", "images_background/Alpha/character02",
                         "images_background/Alpha/character03", "images_background/Alpha/character04"]
    assert chars[5] == "images_background/Beta/character01" and chars[-1] == "images_evaluation/Gamma/character06"
    images, labels, characters = read_omniglot(root)
    assert characters == chars
    assert images.shape == (N_CHARS * PER_CHARACTER, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [i // PER_CHARACTER for i in range(N_CHARS * PER_CHARACTER)]
    for i in (0, 7, 63):  # files in layout order: character by character, drawings in name order
        assert np.allclose(images[i, 0].numpy() / 255.0, reference_pixels(paths[i]), atol=1e-6)
    # strokes are 1, background 0
    blank = root / "images_background" / "Alpha" / "character01" / "0001_01.png"
    im = Image.new("1", (105, 105), 1)
    ImageDraw.Draw(im).rectangle((30, 30, 75, 75), fill=0)
    im.save(blank)
    images, _, _ = read_omniglot(root)
    x = images[0, 0].float() / 255
    assert float(x[14, 14]) == 1.0 and float(x[0, 0]) == 0.0 and float(x[27, 27]) == 0.0


def test_cache_is_reused_and_rebuilt_when_files_change(tree, monkeypatch):
    root, paths = tree
    images, labels, _ = read_omniglot(root)
    assert (root / "omniglot_28x28.pt").is_file()

    def boom(*args, **kwargs):
        raise AssertionError("the PNGs were read again instead of the cache")

    monkeypatch.setattr(omniglot_module, "_load_png", boom)
    cached, cached_labels, _ = read_omniglot(root)
    assert torch.equal(cached, images) and torch.equal(cached_labels, labels)
    monkeypatch.undo()
    _drawing(random.Random(9)).save(paths[0].with_name("9999_99.png"))  # a new file invalidates the cache
    grown, grown_labels, _ = read_omniglot(root)
    assert len(grown) == len(images) + 1 and grown_labels.tolist().count(0) == PER_CHARACTER + 1


def test_finn_split_sizes_and_seed():
    split = omniglot_character_split(1623)
    assert {k: len(v) for k, v in split.items()} == {"train": 1100, "val": 100, "test": 423}
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(1623))
    order = list(range(1623))
    random.Random(1).shuffle(order)  # Finn et al.: random.seed(1); random.shuffle(character_folders)
    assert split["train"] == order[:1100] and split["val"] == order[1100:1200] and split["test"] == order[1200:]
    assert omniglot_character_split(1623) == split
    with pytest.raises(ValueError, match="num_train=1623 must be smaller than the 1623 characters found"):
        omniglot_character_split(1623, num_train=1623)
    with pytest.raises(ValueError, match="num_train=2000 must be smaller than the 1623 characters found"):
        omniglot_character_split(1623, num_train=2000)


def test_datamodule_on_tiny_archive(tree):
    root, _ = tree
    dm = OmniglotDataModule(data_dir=str(root), n_way=5, **TINY)
    assert (dm.in_channels, dm.image_size, dm.n_way, dm.tasks_per_batch) == (1, 28, 5, 2)
    dm.prepare_data()
    dm.setup("fit")
    chars = dm.character_splits
    assert {k: len(v) for k, v in chars.items()} == {"train": 5, "val": 5, "test": 6}
    assert sorted(chars["train"] + chars["val"] + chars["test"]) == list(range(N_CHARS))
    assert chars == omniglot_character_split(N_CHARS, num_train=10, num_val=5)
    assert {k: len(v) for k, v in dm.class_splits.items()} == {"train": 20, "val": 20, "test": 24}
    for s in ("train", "val", "test"):  # the four rotations of a character stay in its split
        assert dm.class_splits[s] == sorted(4 * c + r for c in chars[s] for r in range(4))
    images, _, _ = read_omniglot(root)
    for split in ("train", "val", "test"):
        batch = next(iter(dm.dataloader(split)))
        (xs, ys), (xq, yq) = batch["support"], batch["query"]
        assert xs.shape == (2, 5, 1, 28, 28) and xq.shape == (2, 15, 1, 28, 28) and xs.dtype == torch.float32
        assert ys.dtype == torch.int64 and torch.equal(yq[0], torch.arange(5).repeat_interleave(3))
        assert 0.0 <= float(xs.min()) and float(xq.max()) <= 1.0
        ep = dm.episode(split, 0)
        assert torch.equal(xs[0], dm.dataset(split).build(ep)["support"][0])
        for j, pos in enumerate(ep.query.tolist()):
            turns = int(ep.classes[j // 3]) % 4
            expected = torch.rot90(images[pos].float() / 255, turns, dims=(-2, -1))
            assert torch.equal(xq[0, j], expected)
        assert set(ep.support.tolist()).isdisjoint(ep.query.tolist())
    assert len(dm.train_dataloader()) == 2
    # Finn et al.'s tasks: N distinct characters, each with a random rotation
    turns = set()
    for i in range(30):
        classes = dm.episode("train", i).classes.tolist()
        assert sorted(c // 4 for c in classes) == sorted(chars["train"])  # 5-way over the 5 train characters
        turns |= {c % 4 for c in classes}
    assert turns == {0, 1, 2, 3}


def test_split_size_and_shot_errors(tree):
    root, _ = tree
    too_many = OmniglotDataModule(data_dir=str(root), **{**TINY, "num_train": 17})
    with pytest.raises(ValueError, match="num_train=17 must be smaller than the 16 characters found"):
        too_many.setup()
    all_chars = OmniglotDataModule(data_dir=str(root), **{**TINY, "num_train": 16})
    with pytest.raises(ValueError, match="num_train=16 must be smaller than the 16 characters found"):
        all_chars.setup()
    few_test = OmniglotDataModule(data_dir=str(root), **{**TINY, "num_train": 14, "num_val": 5})
    with pytest.raises(ValueError, match="n_way=5 exceeds the 2 distinct base labels"):
        few_test.setup()  # 9/5/2 characters: 5-way meta-test tasks are impossible
    hungry = OmniglotDataModule(data_dir=str(root), **{**TINY, "k_shot": 2, "q_queries": 3})
    with pytest.raises(ValueError, match=r"has 4 examples but k_shot \+ q_queries = 2 \+ 3 = 5"):
        hungry.setup()
    one_way = OmniglotDataModule(data_dir=str(root), **{**TINY, "num_train": 7, "num_val": 1, "n_way": 1})
    one_way.setup()  # 6/1/9 characters: 24/4/36 class ids
    assert {k: len(v) for k, v in one_way.class_splits.items()} == {"train": 24, "val": 4, "test": 36}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_val": 0}, r"num_val must be an int >= 1 .*got 0"),
        ({"num_train": 100, "num_val": 100}, "num_val=100 must be smaller than num_train=100"),
        ({"num_train": 1}, r"num_train must be an int >= 2 .*got 1"),
        ({"n_way": 3, "num_train": 4, "num_val": 2}, "n_way=3 exceeds the 2 characters of the smallest split"),
        ({"k_shot": 10, "q_queries": 11}, r"k_shot \+ q_queries = 21 exceeds the 20 images per Omniglot character"),
        ({"n_way": 0}, "n_way must be an int >= 1, got 0"),
        ({"q_queries": 0}, "q_queries must be an int >= 1"),
        ({"tasks_per_batch": 0}, "tasks_per_batch must be an int >= 1, got 0"),
        ({"md5": {"images_background": "0" * 32}}, "md5 must map exactly"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OmniglotDataModule(**kwargs)


def test_missing_files_without_download(tmp_path):
    dm = OmniglotDataModule(data_dir=str(tmp_path / "nowhere"))
    expected = tmp_path / "nowhere" / "images_background"
    with pytest.raises(FileNotFoundError, match=rf"{expected}.*Pass download=True"):
        dm.prepare_data()
    with pytest.raises(FileNotFoundError, match="download=True"):
        dm.setup()


def test_download_from_file_url_extracts_and_is_idempotent(tmp_path):
    src = tmp_path / "src"
    build_tree(src)
    server = tmp_path / "server"
    md5 = _zip_subsets(src, server)
    data_dir = tmp_path / "data"
    dm = OmniglotDataModule(data_dir=str(data_dir), download=True, base_url=server.as_uri(), md5=md5, **TINY)
    dm.prepare_data()
    for subset in LAYOUT:
        assert (data_dir / subset).is_dir() and (data_dir / f"{subset}.zip").is_file()
    assert (data_dir / "omniglot_28x28.pt").is_file()
    assert omniglot_characters(data_dir) == omniglot_characters(src)
    for p in server.iterdir():  # already extracted: nothing is fetched again
        p.unlink()
    dm.prepare_data()
    dm.setup()
    assert torch.equal(read_omniglot(data_dir)[0], read_omniglot(src)[0])
    # an extracted folder removed but its verified zip kept: re-extracted offline
    import shutil

    shutil.rmtree(data_dir / "images_evaluation")
    download_omniglot(data_dir, base_url=server.as_uri(), md5=md5)
    assert len(omniglot_characters(data_dir)) == N_CHARS


def test_download_md5_mismatch_and_unsafe_zip(tmp_path):
    src = tmp_path / "src"
    build_tree(src)
    server = tmp_path / "server"
    md5 = _zip_subsets(src, server)
    wrong = {**md5, "images_background": "0" * 32}
    data_dir = tmp_path / "data"
    with pytest.raises(RuntimeError, match=r"MD5 mismatch for .*images_background.zip: expected 0{32}"):
        download_omniglot(data_dir, base_url=server.as_uri(), md5=wrong)
    assert not list(data_dir.iterdir())  # the partial download was removed, nothing extracted
    assert OMNIGLOT_MD5["images_background"] == "68d2efa1b9178cc56df9314c21c6e718"
    evil = tmp_path / "evil"
    evil.mkdir()
    with zipfile.ZipFile(evil / "images_background.zip", "w") as zf:
        zf.writestr("../escaped.txt", "hi")
    with pytest.raises(ValueError, match="would land outside"):
        download_omniglot(tmp_path / "data2", base_url=evil.as_uri(), md5=None)
    assert not (tmp_path / "escaped.txt").exists()
