"""Training augmentations: steps on torchvision.transforms.v2, listed in ``[[data.augment]]``.

v2 transforms an image and its ``tv_tensors.Mask`` together: geometric steps move
the mask with nearest-neighbour sampling and fill it with the ignore label where
pixels are padded or rotated in; photometric steps (colour, blur) leave it alone.
Every step draws from torch's generator, which segkit seeds per sample and epoch,
so a run is reproducible whatever the number of data-loading workers.

Their settings are checked here, without torchvision; the steps are built in
:mod:`segkit_plugins.training.augmentations_torch`.
"""

from __future__ import annotations

from segkit import ConfigError, Param, hookimpl

STEPS = "segkit_plugins.training.augmentations_torch"


def _check_range(name: str, key: str, values: list[float]) -> None:
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise ConfigError(
            f"augmentation '{name}': {key} must be [low, high] with 0 < low <= high, got {values}"
        )


def _check_probability(name: str, p: float) -> None:
    if not 0 <= p <= 1:
        raise ConfigError(f"augmentation '{name}': p must be in [0, 1], got {p}")


def check_random_scale(range: list[float]) -> None:
    _check_range("random_scale", "range", range)


def check_random_crop(size: int | None) -> None:
    if size is not None and size < 1:
        raise ConfigError(f"augmentation 'random_crop': size must be positive, got {size}")


def check_hflip(p: float) -> None:
    _check_probability("hflip", p)


def check_vflip(p: float) -> None:
    _check_probability("vflip", p)


def check_color_jitter(brightness: float, contrast: float, saturation: float, hue: float) -> None:
    for key, value in (
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ):
        if value < 0:
            raise ConfigError(f"augmentation 'color_jitter': {key} must be >= 0, got {value}")
    if not 0 <= hue <= 0.5:
        raise ConfigError(f"augmentation 'color_jitter': hue must be in [0, 0.5], got {hue}")


def check_rotation(degrees: float) -> None:
    if not 0 <= degrees <= 180:
        raise ConfigError(f"augmentation 'rotation': degrees must be in [0, 180], got {degrees}")


def check_gaussian_blur(kernel_size: int, sigma: list[float], p: float) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(
            f"augmentation 'gaussian_blur': kernel_size must be odd and positive, got {kernel_size}"
        )
    _check_range("gaussian_blur", "sigma", sigma)
    _check_probability("gaussian_blur", p)


@hookimpl
def register_augmentations(register):
    def probability(default: float) -> Param:
        return Param("p", float, default, "probability of applying the step")

    register(
        "random_scale",
        f"{STEPS}:random_scale",
        params=[
            Param("range", list[float], [0.5, 1.5], "[low, high] factor of the image's own size")
        ],
        help="rescale by a random factor (bilinear image, nearest mask)",
        check=check_random_scale,
    )
    register(
        "random_crop",
        f"{STEPS}:random_crop",
        params=[Param("size", int | None, None, "square crop; default data.crop_size")],
        help="random square crop; smaller images padded with the mean colour and ignore",
        check=check_random_crop,
    )
    register(
        "hflip",
        f"{STEPS}:hflip",
        params=[probability(0.5)],
        help="mirror left-right",
        check=check_hflip,
    )
    register(
        "vflip",
        f"{STEPS}:vflip",
        params=[probability(0.5)],
        help="mirror top-bottom (aerial, medical)",
        check=check_vflip,
    )
    register(
        "color_jitter",
        f"{STEPS}:color_jitter",
        params=[
            Param("brightness", float, 0.25, "brightness factor drawn from [1-b, 1+b]"),
            Param("contrast", float, 0.25, "contrast factor drawn from [1-c, 1+c]"),
            Param("saturation", float, 0.25, "saturation factor drawn from [1-s, 1+s]"),
            Param("hue", float, 0.0, "hue shift drawn from [-h, h], h <= 0.5"),
        ],
        help="random brightness, contrast, saturation and hue (image only)",
        check=check_color_jitter,
    )
    register(
        "rotation",
        f"{STEPS}:rotation",
        params=[Param("degrees", float, 10.0, "angle drawn from [-degrees, degrees]")],
        help="random rotation; corners filled with the mean colour and ignore",
        check=check_rotation,
    )
    register(
        "gaussian_blur",
        f"{STEPS}:gaussian_blur",
        params=[
            Param("kernel_size", int, 5, "odd kernel size in pixels"),
            Param("sigma", list[float], [0.1, 1.5], "[low, high] range of the blur's sigma"),
            probability(0.5),
        ],
        help="Gaussian blur with a random sigma, applied with probability p (image only)",
        check=check_gaussian_blur,
    )
