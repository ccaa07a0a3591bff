"""Training-time augmentation of image batches: random horizontal flips and small random shifts.

Used by the training loop (``TrainConfig.augment_flip`` / ``augment_shift``) on the intensity batch before it is
encoded, so every encoding and method sees the same augmented images. Evaluation never augments. The randomness
comes from the generator the loop derives from (seed, epoch, worker): a resumed run draws the same augmentation.
"""

from __future__ import annotations

import torch


def augment_images(batch: torch.Tensor, generator: torch.Generator, *, flip: bool = False,
                   shift: int = 0) -> torch.Tensor:
    """Each image flipped left-right with probability 0.5 and/or moved by up to ``shift`` pixels.

    Args:
        batch: (B, C, H, W) images (intensities).
        generator: the source of every random draw (flip, then vertical and horizontal offsets).
        flip: mirror each image left-right with probability 0.5.
        shift: move each image by a random whole number of pixels in [−shift, shift], independently down and
            across; pixels moved in are zero (the background of MNIST-like images), as padded random crops do.

    Raises:
        ValueError: a batch that is not (B, C, H, W), or a negative shift.
    """
    if batch.dim() != 4:
        raise ValueError(f"augmentation needs image batches (B, C, H, W), got shape {tuple(batch.shape)}; "
                         "turn augment_flip / augment_shift off for this data set")
    if shift < 0:
        raise ValueError(f"shift must be at least 0 pixels, got {shift}")
    size, _, height, width = batch.shape
    if flip:
        mirrored = torch.rand(size, generator=generator) < 0.5
        batch = torch.where(mirrored.view(-1, 1, 1, 1).to(batch.device), batch.flip(-1), batch)
    if shift:
        padded = torch.nn.functional.pad(batch, (shift, shift, shift, shift))
        top = torch.randint(0, 2 * shift + 1, (size,), generator=generator).to(batch.device)
        left = torch.randint(0, 2 * shift + 1, (size,), generator=generator).to(batch.device)
        rows = (top[:, None] + torch.arange(height, device=batch.device))[:, :, None]  # (B, H, 1)
        columns = (left[:, None] + torch.arange(width, device=batch.device))[:, None, :]  # (B, 1, W)
        samples = torch.arange(size, device=batch.device)[:, None, None]
        batch = padded[samples, :, rows, columns].permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) → (B, C, H, W)
    return batch
