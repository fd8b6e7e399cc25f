"""save_genotype_files: the one writer of a found genotype's files."""

from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.genotype_files import save_genotype_files
from lit_automl.spaces.published import get_genotype


def test_writes_text_json_and_picture_that_read_back(tmp_path):
    g = get_genotype("DARTS_V2")
    paths = save_genotype_files(g, tmp_path / "run", stem="best", title="DARTS_V2")
    assert [p.name for p in paths] == ["best.txt", "best.json", "best.png"]
    assert Genotype.load(paths[0]) == g and Genotype.load(paths[1]) == g
    assert paths[2].stat().st_size > 1000 and paths[2].read_bytes()[:4] == b"\x89PNG"


def test_plot_false_writes_no_picture(tmp_path):
    paths = save_genotype_files(get_genotype("DARTS_V1"), tmp_path, plot=False)
    assert [p.name for p in paths] == ["genotype.txt", "genotype.json"]
    assert not (tmp_path / "genotype.png").exists()
