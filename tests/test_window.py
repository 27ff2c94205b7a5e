import torch

from swinfuse.model.window import relative_position_index, shift_mask, window_partition, window_reverse


def test_partition_reverse_round_trip():
    x = torch.randn(2, 12, 16, 3)
    w = window_partition(x, 4)
    assert w.shape == (2, 12, 16, 3)  # (B, nW=3*4, L=16, C)
    torch.testing.assert_close(window_reverse(w, 4, 12, 16), x)


def test_partition_groups_spatial_windows():
    x = torch.arange(8 * 8).float().view(1, 8, 8, 1)
    w = window_partition(x, 4)
    # second window (row 0, col 1) holds columns 4..7 of rows 0..3
    assert w[0, 1, :, 0].tolist() == [r * 8 + c for r in range(4) for c in range(4, 8)]


def test_relative_position_index_range_and_symmetry():
    idx = relative_position_index(4)
    assert idx.shape == (16, 16)
    assert idx.min() == 0 and idx.max() == (2 * 4 - 1) ** 2 - 1
    assert (idx.diagonal() == idx[0, 0]).all()  # zero offset maps to one bias entry


def test_shift_mask_separates_wrapped_regions():
    Hp, Wp, ws, s = 8, 8, 4, 2
    mask = shift_mask(Hp, Wp, ws, s, torch.device("cpu"))
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()  # the top-left window holds no wrapped pixels
    # bottom-right window after the roll mixes 4 regions: token 0 (interior) vs token 15 (wrapped corner)
    assert mask[3, 0, 15] == float("-inf") and mask[3, 0, 0] == 0
    assert torch.equal(mask, mask.transpose(-1, -2))


def test_roll_rows_cuts_and_restores_the_rolled_map():
    from swinfuse.model.window import roll_rows, unroll_rows_

    x = torch.randn(2, 12, 16, 3)
    rolled = torch.roll(x, shifts=(-2, -2), dims=(1, 2))
    for r0, h in ((0, 12), (0, 4), (4, 4), (8, 4), (10, 2)):
        torch.testing.assert_close(roll_rows(x, r0, h, 2), rolled[:, r0:r0 + h], rtol=0, atol=0)
    out = torch.empty_like(x)
    for r0 in (0, 4, 8):
        unroll_rows_(out, rolled[:, r0:r0 + 4], r0, 2)
    torch.testing.assert_close(out, x, rtol=0, atol=0)
