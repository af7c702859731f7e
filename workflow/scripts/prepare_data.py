"""Adapter: load and prepare the configured dataset (see ntkscaling.data.prepare)."""
from ntkscaling import data, files, jobs

with jobs.job(snakemake):
    ds = snakemake.params.dataset
    arrays = data.prepare(ds["name"], root=ds["root"], test_size=ds["test_size"], classes=ds["classes"],
                          download=ds["download"], file=ds["file"], downsample_factor=ds["downsample"],
                          test_overlap=ds["test_overlap"], val_size=ds["val_size"],
                          planted=ds["planted"])
    overlap = int(arrays.pop("test_overlap"))
    files.save_npz(snakemake.output.data, **arrays)
    meta = {"dataset": ds, "x_train": list(arrays["x_train"].shape), "x_val": list(arrays["x_val"].shape),
            "x_test": list(arrays["x_test"].shape), "n_classes": int(arrays["n_classes"]),
            "test_inputs_also_in_train": overlap,
            "validation": {"size": int(len(arrays["y_val"])), "split_seed": data.VAL_SPLIT_SEED,
                           "indices_in_training_split": arrays["val_index"].tolist(),
                           "what": "a class-balanced draw from the training split, removed from the pool every "
                                   "nested subset is drawn from; disjoint from the test set"},
            "provenance": files.provenance(snakemake.config)}
    files.save_json(snakemake.output.meta, meta)
    print(f"prepared {ds['name']}: train pool {arrays['x_train'].shape}, validation {arrays['x_val'].shape}, "
          f"test {arrays['x_test'].shape}, {int(arrays['n_classes'])} classes")
