"""The workflow's own machinery, never importing torch (the Snakefile reads it on every start): the config
and its schema (`config`, `schema.yaml`), robustness sweeps (`sweep`), job resource requests (`jobsize`), the
code inputs of each rule (`code_inputs`) and the predictors' tags in paths and tables (`tags`)."""
