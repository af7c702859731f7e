"""The network under training as a LightningModule, and the nested subset it trains on.

`NetworkModule` wraps the plain network of nets/models.py. By default its output is *centred*: f(x) - f0(x), with
f0 a frozen copy of the initial network, so the function starts at exactly zero and, in the lazy limit,
training converges to kernel regression with the network's NTK (the gradients, hence the eNTK, are those of
f). `output_scale` alpha multiplies the centred output and divides the loss by alpha^2 (lazy training: large
alpha is the kernel limit, small alpha leaves it). The initialization depends only on (seed, width), so
every n of a seed starts from the same network and shares one eNTK at init.
"""
from __future__ import annotations

import copy
import dataclasses

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..nets import models
from ..data import DatasetError, load_prepared
from ..files import load_npy
from ..analysis.losses import per_point_loss
from .divergence import check_training_loss
from .batches import EpochBatches
from .settings import NetworkSettings, TrainSettings, lr_factor


class SubsetDataModule(pl.LightningDataModule):
    """Nested subset n of a prepared dataset; batches drawn by `EpochBatches` seeded from `seed`."""

    def __init__(self, prepared_path, order_path, n: int, batch_size: int, seed: int):
        super().__init__()
        self.prepared_path, self.order_path = str(prepared_path), str(order_path)
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.sampler = EpochBatches(self.n, self.seed, self.batch_size)
        self.f0_train = None  # the frozen initial outputs on the training points, when the network is centred

    def setup(self, stage=None):
        d = load_prepared(self.prepared_path)
        order = load_npy(self.order_path)
        if self.n > len(order):
            raise DatasetError(f"n={self.n} is larger than the training pool ({len(order)} examples)")
        idx = order[: self.n]
        self.n_classes = int(d["n_classes"])
        self.x_train = torch.from_numpy(d["x_train"][idx])
        self.y_train = torch.from_numpy(d["y_train"][idx])
        self.x_val = torch.from_numpy(d["x_val"])
        self.y_val = torch.from_numpy(d["y_val"])
        self.x_test = torch.from_numpy(d["x_test"])
        self.y_test = torch.from_numpy(d["y_test"])

    def train_dataloader(self):
        tensors = (self.x_train, self.y_train) + (() if self.f0_train is None else (self.f0_train,))
        # batch_size=None: each item the sampler yields is a whole batch's indices, taken in one indexing
        return DataLoader(TensorDataset(*tensors), batch_size=None, sampler=self.sampler)


class NetworkModule(pl.LightningModule):
    """A network of nets/models.py under training. Its checkpoint's hyper_parameters hold the settings as plain
    dicts ({"network": ..., "train": ..., "in_shape", "out_dim", "init_seed", "total_steps"}), which
    models.load_network reads back; the module itself keeps the records as `network` and `train_settings`."""

    def __init__(self, network: NetworkSettings | dict, train: TrainSettings | dict = TrainSettings(),
                 in_shape=(1,), out_dim: int = 1, init_seed: int = 0, total_steps: int = 1):
        super().__init__()
        network = network if isinstance(network, NetworkSettings) else NetworkSettings(**network)
        train = train if isinstance(train, TrainSettings) else TrainSettings(**train)
        self.save_hyperparameters({"network": dataclasses.asdict(network), "train": dataclasses.asdict(train),
                                   "in_shape": list(in_shape), "out_dim": int(out_dim), "init_seed": int(init_seed),
                                   "total_steps": int(total_steps)})
        self.network, self.train_settings = network, train
        self.net = models.build_network(dataclasses.asdict(network), in_shape, out_dim, init_seed)
        # f0: the frozen initial function, subtracted from the output (kept in checkpoints, never trained);
        # always in eval mode, so that a module with BatchNorm or dropout subtracts one fixed function
        self.net0 = copy.deepcopy(self.net).requires_grad_(False).eval() if network.center else None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.net0 is not None:
            self.net0.eval()
        return self

    def forward(self, x):
        out = self.net(x)
        return out if self.net0 is None else self.network.output_scale * (out - self.net0(x))

    def training_step(self, batch, batch_idx):
        x, y, *f0 = batch  # f0: the frozen initial outputs, precomputed once (a centred network's f - f0)
        scale = self.network.output_scale
        out = scale * (self.net(x) - f0[0]) if f0 else self(x)
        t = self.train_settings
        # divided by alpha^2: the function moves at the same rate whatever alpha (Chizat, Oyallon, Bach 2019)
        loss = per_point_loss(out, y, t.loss).mean() / scale ** 2
        check_training_loss(loss.detach(), self.current_epoch, self.global_step, t)
        trainer = self._trainer  # None when called outside a Trainer
        if trainer is not None and trainer.progress_bar_callback is not None:  # a terminal's bar: 40% of a small step
            self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        t, total = self.train_settings, self.hparams.total_steps
        params = self.net.parameters()
        if t.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, total, t.lr_schedule, t.warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
