"""Datasets, standardization and nested subsets: the first stage of the pipeline. Never imports torch.

- facts.py: what is known without reading a file (names, official checksums, the built-in datasets' table,
  `DatasetError`);
- labels.py: the one label rule and the class subset;
- formats.py: reading each format (`load_raw`);
- preparation.py: the prepared dataset (`prepare`: fixed test and validation sets, standardization) and the
  nested subsets (`nested_order`);
- rows.py: the rows every kernel is computed on (`kernel_rows`, `row_blocks`).

The public names of all five are importable from here (`from ntkscaling import data; data.prepare(...)`).
"""
from .facts import (BUILTIN, CIFAR10_MD5, CIFAR10_TARBALL, CIFAR10_URL, DATASETS, DIGITS_SPLIT_SEED, IMAGE_SUFFIXES,
                    MNIST_FILES, VAL_SPLIT_SEED, WIDE_IMAGE_MODES, BuiltinFacts, DatasetError)
from .formats import (RestrictedUnpickler, fetch_cifar10, find_file, identical_files, imagefolder_listing,
                      load_cifar10_raw, load_digits_raw, load_imagefolder_raw, load_mnist_raw, load_npz_raw,
                      load_planted_raw, load_raw, md5sum, read_idx, restricted_load)
from .labels import check_labels, classes_without_examples, label_problem, select_classes
from .preparation import (OVERLAP_POLICIES, balanced_order, check_overlap, downsample, find_overlap, load_prepared,
                          nested_order, prepare, split, validation_split)
from .rows import KERNEL_ROWS_DESCRIPTION, kernel_rows, labelled_rows, one_hot, pool_size, row_blocks
