"""Training from one config: data -> preprocessing pipeline -> loop (k-fold, DDP) -> model bundle.

    from respira.config import load_config
    from respira.train import train
    result = train(load_config("configs/vocal5.yaml"), "runs/vocal5")
"""

from respira.train.loop import Interrupted
from respira.train.job import RunResult, train

__all__ = ["Interrupted", "RunResult", "train"]
