"""Eval windows and their reconstructions as heatmap images, for TensorBoard's Images tab."""

import numpy as np

IMAGE_SCALE = 4  # Each value becomes a 4x4 pixel block, so 32 channels read clearly.


def heatmap_rgb(values: np.ndarray, limit: float = 3.0) -> np.ndarray:
    """[rows, columns] standardized values -> uint8 RGB: blue (-limit), white (0), red (+limit)."""
    scaled = np.clip(values / limit, -1.0, 1.0)[..., None]
    white = np.ones(3)
    red, blue = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.8])
    rgb = np.where(scaled > 0, white + scaled * (red - white), white - scaled * (blue - white))
    return (rgb * 255).round().astype(np.uint8)


def reconstruction_images(windows: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """[n, time, channels] pairs -> [n, height, width, 3] uint8: each window above its
    reconstruction, channels as rows and time as columns, a grey line between them."""
    images = []
    for window, reconstruction in zip(windows, reconstructions, strict=True):
        separator = np.full((1, window.shape[0], 3), 128, np.uint8)
        image = np.concatenate(
            [heatmap_rgb(window.T), separator, heatmap_rgb(reconstruction.T)], axis=0
        )
        images.append(image.repeat(IMAGE_SCALE, axis=0).repeat(IMAGE_SCALE, axis=1))
    return np.stack(images)
