"""Adapter: load and prepare the configured dataset (see ntkscaling.data.prepare)."""
from ntkscaling import data, io

with io.log_to(snakemake.log[0]):
    ds = snakemake.params.dataset
    arrays = data.prepare(ds["name"], root=ds["root"], test_size=ds["test_size"], classes=ds["classes"],
                          download=ds["download"], file=ds["file"],
                          downsample_factor=ds["downsample"], test_overlap=ds["test_overlap"])
    overlap = int(arrays.pop("test_overlap"))
    io.save_npz(snakemake.output.data, **arrays)
    meta = {"dataset": ds, "x_train": list(arrays["x_train"].shape), "x_test": list(arrays["x_test"].shape),
            "n_classes": int(arrays["n_classes"]), "test_inputs_also_in_train": overlap,
            "provenance": io.provenance(snakemake.config)}
    io.save_json(snakemake.output.meta, meta)
    print(f"prepared {ds['name']}: train pool {arrays['x_train'].shape}, test {arrays['x_test'].shape}, "
          f"{int(arrays['n_classes'])} classes")
