"""Issue 14, the search spaces: a genotype naming an operation that cannot be built fails where it is
read (text, JSON, file), listing the valid names as building does; a damaged genotype file is named."""

from __future__ import annotations

import pytest

from lit_automl._checks import UnknownNameError
from lit_automl.spaces import op_names, ops
from lit_automl.spaces.genotype import Genotype, GenotypeParseError, UnknownOperationError
from lit_automl.spaces.networks import NetworkCIFAR

UNKNOWN = ("Genotype(normal=[('sep_conv_9x9', 0), ('skip_connect', 1)], normal_concat=[2], "
           "reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])")
VALID = r"valid names are: avg_pool_3x3, conv_1x1, .*, skip_connect \(lit_automl.spaces.register_op adds one\)$"


def test_parse_refuses_an_unknown_op_listing_the_valid_names():
    with pytest.raises(UnknownOperationError, match=r"^genotype text uses unregistered operation\(s\) \['sep_conv_9x9'\]; "
                                                    + VALID) as info:
        Genotype.parse(UNKNOWN)
    assert isinstance(info.value, GenotypeParseError) and isinstance(info.value, UnknownNameError)


def test_json_and_files_refuse_unknown_ops_too(tmp_path):
    text = Genotype.parse(UNKNOWN.replace("sep_conv_9x9", "sep_conv_3x3")).to_json().replace("sep_conv_3x3", "conv_9x9")
    with pytest.raises(UnknownOperationError, match=r"^genotype dict uses unregistered operation\(s\) \['conv_9x9'\]; "
                                                    + VALID):
        Genotype.from_json(text)
    path = tmp_path / "cell.txt"
    path.write_text(UNKNOWN)
    with pytest.raises(UnknownOperationError, match=rf"^genotype file {path}: genotype text uses unregistered "
                                                    r"operation\(s\) \['sep_conv_9x9'\]"):
        Genotype.load(path)


def test_the_reader_and_the_builder_agree_on_the_names(monkeypatch):
    assert set(ops.OPS) == op_names.OP_NAMES  # every name the reader accepts can be built, and back
    with pytest.raises(UnknownNameError, match=r"^the cell uses unregistered operation\(s\) \['sep_conv_9x9'\]; " + VALID):
        # the constructor checks structure only (code builds genotypes of any op), building checks the names
        NetworkCIFAR(Genotype([("sep_conv_9x9", 0), ("skip_connect", 1)], [2], [("max_pool_3x3", 0), ("skip_connect", 1)],
                              [2]), C=4, layers=3)
    monkeypatch.setattr(op_names, "OP_NAMES", set(op_names.OP_NAMES))
    monkeypatch.setattr(ops, "OP_NAMES", op_names.OP_NAMES)
    monkeypatch.setattr(ops, "OPS", dict(ops.OPS))
    ops.register_op("sep_conv_9x9")(lambda C, stride, affine: ops.OPS["sep_conv_3x3"](C, stride, affine))
    assert Genotype.parse(UNKNOWN).op_names() == {"sep_conv_9x9", "skip_connect", "max_pool_3x3"}


def test_a_missing_genotype_file_is_named_with_what_it_should_hold(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"^genotype file {tmp_path / 'none.json'} does not exist \(expected a "
                                                r"genotype in the text form Genotype\(normal=\[\.\.\.\], \.\.\.\) or its JSON\)$"):
        Genotype.load(tmp_path / "none.json")


def test_a_genotype_file_with_bad_content_is_named_before_the_readers_message(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text('{"normal": [[["skip_connect", 0]]], "normal_concat": [2], "reduce": [[["skip_connect", 5]]], '
                    '"reduce_concat": [2]}')
    with pytest.raises(ValueError, match=rf"^genotype file {path}: reduce node 0 edge 0 \('skip_connect', 5\): input "
                                         r"index 5 out of range for node 0 \(index 2\); allowed 0\.\.1"):
        Genotype.load(path)
