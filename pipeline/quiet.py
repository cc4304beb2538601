"""Keeps the libraries' own chatter (TensorFlow's C++ info lines, deprecation notices from
TensorFlow, TFMA and Beam) out of a run's output, which is the pipeline's to write.

`PIPELINE_LIBRARY_LOGS=1` leaves every library's logging as it is, for a person chasing a problem
inside one. Called by the command line and by each step worker before TensorFlow is imported; the
settings pass to the processes they start through the environment.
"""

from __future__ import annotations

import logging
import os
import warnings

SWITCH = "PIPELINE_LIBRARY_LOGS"


def quiet_libraries() -> None:
    if os.environ.get(SWITCH) == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ info and warnings; errors still show
    # ML Metadata's C++ log (glog): "Connecting to database." on every open of a server store;
    # its errors stay (pipeline.metadata._connect reads them to say what went wrong in one line).
    os.environ.setdefault("GLOG_minloglevel", "2")
    for name in ("tensorflow", "absl", "apache_beam", "tensorflow_model_analysis", "tensorflow_transform"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in (
        "tensorflow",
        "tensorflow_model_analysis",
        "tensorflow_transform",
        "apache_beam",
        "tfx_bsl",
        "keras",
    ):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
