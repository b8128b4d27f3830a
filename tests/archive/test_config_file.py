"""conf/archive.yaml is the lowest layer of the archive settings: flags > TRADELAB_S3_* > file."""

from __future__ import annotations

import pytest

from tradelab_jax.archive.config import MiB, file_defaults, spec_from
from tradelab_jax.errors import UserError


def test_shipped_file_sets_no_bucket_and_64_mib_parts():
    defaults = file_defaults()
    assert "bucket" not in defaults and defaults["part_size_mib"] == 64


def test_precedence_flags_then_environment_then_file(tmp_path):
    path = tmp_path / "archive.yaml"
    path.write_text("bucket: from-file\nprefix: lab\npart_size_mib: 8\n")
    config = file_defaults(path)
    spec = spec_from(env={}, config=config)
    assert (spec.bucket, spec.prefix, spec.part_size) == ("from-file", "lab/", 8 * MiB)
    spec = spec_from(env={"TRADELAB_S3_BUCKET": "from-env", "TRADELAB_S3_PREFIX": "envp"}, config=config)
    assert (spec.bucket, spec.prefix) == ("from-env", "envp/")
    spec = spec_from(bucket="from-flag", prefix="flagp", env={"TRADELAB_S3_BUCKET": "env"}, config=config)
    assert (spec.bucket, spec.prefix) == ("from-flag", "flagp/")


def test_unknown_key_is_one_clear_sentence(tmp_path):
    path = tmp_path / "archive.yaml"
    path.write_text("bukket: x\n")
    with pytest.raises(UserError, match=r"unknown keys \['bukket'\]; valid: bucket, prefix"):
        file_defaults(path)
