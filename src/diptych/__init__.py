"""diptych: paired image-to-image translation with conditional GANs (pix2pix), at any resolution."""

from .config import RunConfig, load_config
from .errors import DiptychError
from .train import TrainResult, train
from .translate import Translator

__version__ = "0.1.0"

__all__ = ["DiptychError", "RunConfig", "TrainResult", "Translator", "__version__", "load_config", "train"]
