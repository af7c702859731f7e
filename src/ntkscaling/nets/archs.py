"""The names of the built-in networks, apart from their definitions (nets/models.py, nets/resnet.py) so that the config
check and the workflow's start-up read them without importing torch."""

LAYERED = ("mlp", "myrtle5", "myrtle7", "myrtle10")  # built from a layer description (models.layer_specs)
MODULES = ("resnet",)  # built-in torch modules (nets/resnet.py), built like a user's factory
BUILT_IN = LAYERED + MODULES
