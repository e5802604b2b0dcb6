"""Training: the Lightning module and trainer, the optimizer and schedule, and GradCache. Imports
Lightning; the library (network, data, tasks) does not."""

from mumo.training.module import TrainingModule, uses_gradcache
from mumo.training.optim import WarmupCosine, build_optimizer
from mumo.training.trainer import fit, load_weights

__all__ = ["TrainingModule", "WarmupCosine", "build_optimizer", "fit", "load_weights", "uses_gradcache"]
