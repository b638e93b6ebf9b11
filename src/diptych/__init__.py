"""diptych: image-to-image translation with GANs (pix2pix, pix2pixHD, CycleGAN), at any resolution."""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

__all__ = ["DiptychError", "RunConfig", "TrainResult", "Translator", "__version__", "load_config", "train"]

# The public names and their modules, imported on first use: the command line starts (and `--help` answers)
# without waiting for torch, and a Ctrl-C during start-up reaches the command line's own handler.
_API = {
    "DiptychError": "errors",
    "RunConfig": "config",
    "load_config": "config",
    "TrainResult": "train",
    "train": "train",
    "Translator": "translate",
}

TYPE_CHECKING = False  # typing itself is not imported: every millisecond of start-up counts (see __main__.py)
if TYPE_CHECKING:
    from .config import RunConfig, load_config
    from .errors import DiptychError
    from .train import TrainResult, train
    from .translate import Translator


class _Package(types.ModuleType):
    """The diptych package, resolving its public names lazily."""

    def __getattr__(self, name: str) -> object:
        if name not in _API:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{_API[name]}", self.__name__), name)
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value: object) -> None:
        # Importing the submodule diptych.train binds it as the package attribute `train`; the public `train` is
        # the function of that name, as `from diptych import train` has always given.
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_API))


sys.modules[__name__].__class__ = _Package
