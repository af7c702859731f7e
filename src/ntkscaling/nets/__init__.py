"""Networks: what each layer means (`layers`: forward pass, eNTK rule and infinite-width step, one class per
layer type), the built-in architectures built from one description (`models`, `resnet`), their names without
torch (`archs`: the config check reads them) and checkpoint loading (`models.load_network`)."""
