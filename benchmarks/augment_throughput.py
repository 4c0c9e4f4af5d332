"""How fast the training augmentation runs: images/s of the DataLoader over cached samples.

The quickstart's samples are drawn once and kept in memory, so only the
``[[data.augment]]`` pipeline (on torchvision.transforms.v2), the crop and the
normalisation are timed, with 0 and 1 worker processes (best of 3 passes each)::

    python benchmarks/augment_throughput.py [--config configs/deeplab_crf.toml] [--images 400]
"""

from __future__ import annotations

import argparse
import time

import torch

from segkit.core import get_plugins, load_config
from segkit.data import (
    SegmentationDataset,
    ShardSampler,
    TrainingSet,
    build_dataset,
    build_train_transform,
    make_loader,
)


class Cached(SegmentationDataset):
    def __init__(self, dataset: SegmentationDataset, count: int) -> None:
        super().__init__(dataset.class_names, dataset.palette)
        self.samples = [dataset[i] for i in range(min(count, len(dataset)))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return self.samples[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/deeplab_crf.toml")
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    registry = get_plugins().registry
    config = load_config(args.config, registry=registry)
    part = config.data.dataset
    dataset = Cached(build_dataset(part.name, "train", part.params, registry), args.images)
    training_set = TrainingSet(dataset, build_train_transform(config.data, registry))
    steps = ", ".join(step.name for step in config.data.augment)
    print(f"{config.name}: [{steps}] + crop {config.data.crop_size}, {len(dataset)} images")
    for workers in (0, 1):
        loader = make_loader(
            training_set,
            ShardSampler(len(training_set)),
            config.data.batch_size,
            workers,
            torch.device("cpu"),
            drop_last=True,
        )
        best = 0.0
        for _ in range(3):
            start, seen = time.perf_counter(), 0
            for images, _ in loader:
                seen += images.shape[0]
            best = max(best, seen / (time.perf_counter() - start))
        print(f"workers={workers}: {best:.0f} images/s")


if __name__ == "__main__":
    main()
