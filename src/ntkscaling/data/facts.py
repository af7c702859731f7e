"""What is known about the datasets without reading them: the supported names, the official files and
their checksums, the fixed split seeds, the table of built-in dataset facts (`BUILTIN`, which the loaders
and the config check both read) and the error every dataset problem raises (`DatasetError`)."""
from __future__ import annotations

from typing import NamedTuple

from .. import planted as planted_tasks
from ..files import InputError


DATASETS = ("digits", "cifar10", "mnist", "imagefolder", "npz") + planted_tasks.PLANTED
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
MNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
               "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
WIDE_IMAGE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # PIL modes beyond 8 bits per channel
DIGITS_SPLIT_SEED = 20220610  # fixed: the digits train pool / test split never depends on run seeds
VAL_SPLIT_SEED = 31337  # fixed: the validation set never depends on run seeds




class BuiltinFacts(NamedTuple):
    """What is known about a built-in dataset without reading it: its image (channels, H, W) and its examples
    per class in the training pool and the test split (None: ntkscaling draws the test set itself)."""
    shape: tuple[int, int, int]
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...] | None

    @property
    def classes(self) -> int:  # labels lie in 0..classes-1
        return len(self.train_counts)


# The one table of built-in dataset facts: the loaders check labels against it, the config check sizes
# subsets, checks classes and downsampling and shapes networks from it before any job.
BUILTIN = {
    # digits is split by ntkscaling itself (the test set is drawn from all 1797 images)
    "digits": BuiltinFacts((1, 8, 8), (178, 182, 177, 183, 181, 182, 181, 179, 174, 180), None),
    "cifar10": BuiltinFacts((3, 32, 32), (5000,) * 10, (1000,) * 10),
    "mnist": BuiltinFacts((1, 28, 28), (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                          (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
}


class DatasetError(InputError):
    """A dataset file is missing, corrupt or not of the expected shape, or the config asks for what it does
    not hold."""
