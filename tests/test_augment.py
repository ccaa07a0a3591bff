"""Training-time augmentation of image batches (pipeline.data.augment) and its use by the training loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as functional

from lavaflow.pipeline.data.augment import augment_images


def _images(seed: int = 0, size: int = 64) -> torch.Tensor:
    return torch.rand((size, 2, 7, 9), generator=torch.Generator().manual_seed(seed))


def test_without_flip_or_shift_the_batch_is_unchanged() -> None:
    images = _images()
    assert torch.equal(augment_images(images, torch.Generator().manual_seed(0)), images)


def test_flip_mirrors_about_half_of_the_images_and_leaves_the_rest() -> None:
    images = _images()
    out = augment_images(images, torch.Generator().manual_seed(1), flip=True)
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True))  # each image exactly one of the two
    assert 16 <= sum(mirrored) <= 48


@pytest.mark.parametrize("shift", [1, 2])
def test_shift_moves_each_image_by_at_most_shift_pixels_with_zero_fill(shift: int) -> None:
    images = _images(size=200)
    out = augment_images(images, torch.Generator().manual_seed(2), shift=shift)
    assert out.shape == images.shape
    padded = functional.pad(images, (shift, shift, shift, shift))
    offsets = set()
    for o, p in zip(out, padded, strict=True):
        found = [(top, left) for top in range(2 * shift + 1) for left in range(2 * shift + 1)
                 if torch.equal(o, p[:, top:top + 7, left:left + 9])]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) == (2 * shift + 1) ** 2  # every offset drawn, over 200 images


def test_the_same_generator_seed_gives_the_same_augmentation_and_another_seed_another() -> None:
    images = _images()
    first = augment_images(images, torch.Generator().manual_seed(3), flip=True, shift=2)
    assert torch.equal(first, augment_images(images, torch.Generator().manual_seed(3), flip=True, shift=2))
    assert not torch.equal(first, augment_images(images, torch.Generator().manual_seed(4), flip=True, shift=2))


def test_non_image_batches_and_negative_shifts_are_refused() -> None:
    with pytest.raises(ValueError, match="image batches"):
        augment_images(torch.zeros(4, 10), torch.Generator(), flip=True)
    with pytest.raises(ValueError, match="at least 0"):
        augment_images(_images(), torch.Generator(), shift=-1)
