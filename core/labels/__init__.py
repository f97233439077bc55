"""Labels: segments, the DVS Gesture CSV and HDF5 label I/O, the editor document, suggestions, dataset export."""

from dvsapp.core.labels.files import *  # noqa: F403
from dvsapp.core.labels.files import DATASET_FORMAT, __all__  # noqa: F401
