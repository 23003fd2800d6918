"""Stage registry: every module in this package registers its Stage; recipes name them."""

import importlib
import pkgutil

REGISTRY: dict = {}


def register(cls):
    REGISTRY[cls.name] = cls
    return cls


for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
