"""run.devices: the device count a packed sweep's points are sharded over (training/devices.py)."""

from __future__ import annotations

import pytest

from tradelab_jax.errors import UserError
from tradelab_jax.training.devices import mesh_size, requested_devices


@pytest.mark.parametrize(("value", "available", "expected"),
                         [("all", 4, 4), (None, 2, 2), ("1", 4, 1), (3, 4, 3), ("4", 4, 4)])
def test_requested_devices(value, available, expected):
    assert requested_devices(value, available) == expected


@pytest.mark.parametrize(("value", "needle"), [("0", "invalid run.devices='0'"), ("two", "invalid"),
                                               (True, "invalid"), ("1.5", "invalid"),
                                               ("8", "sees 4 local device(s)")])
def test_bad_device_counts_are_one_sentence(value, needle):
    with pytest.raises(UserError) as err:
        requested_devices(value, 4)
    assert needle in str(err.value) and "valid: 'all' or a whole number" in str(err.value)


@pytest.mark.parametrize(("points", "requested", "expected"),
                         [(8, 4, 4), (8, 3, 2), (6, 4, 3), (7, 4, 1), (1, 8, 1), (3, 8, 3)])
def test_the_mesh_is_the_largest_count_dividing_the_points(points, requested, expected):
    assert mesh_size(points, requested) == expected
