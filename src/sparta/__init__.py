"""sparta: train and honestly evaluate adversarially robust CNNs with the Sparta activation.

Sparta: Spatially Attentive and Adversarially Robust Activation (Guo et al.,
arXiv:2105.08269).
"""

from sparta.activations import ACTIVATIONS, FReLU, activation_names, create_activation
from sparta.attacks import FGSM, PGD, AutoAttack, create_attack
from sparta.checkpoint import load_checkpoint, save_checkpoint
from sparta.config import TrainConfig
from sparta.convert import convert_activations
from sparta.data import load_dataset
from sparta.errors import DataError, SpartaError
from sparta.evaluation import accuracy, evaluate, evaluate_run
from sparta.losses import fgsm_rs_loss, pgd_at_loss, trades_loss
from sparta.models import MODELS, build_model, model_names
from sparta.parametric import ParametricSoftplus, PSSiLU
from sparta.pretrained import load_pretrained, pretrained_names
from sparta.progress import SpartaWarning
from sparta.report.sites import SiteSummary, site_summaries
from sparta.sharing import export_sparta, import_sparta, share_sparta, sparta_sites
from sparta.sparta_activation import Sparta
from sparta.training.loop import train

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "FGSM",
    "MODELS",
    "PGD",
    "AutoAttack",
    "DataError",
    "FReLU",
    "PSSiLU",
    "ParametricSoftplus",
    "SiteSummary",
    "Sparta",
    "SpartaError",
    "SpartaWarning",
    "TrainConfig",
    "accuracy",
    "activation_names",
    "build_model",
    "convert_activations",
    "create_activation",
    "create_attack",
    "evaluate",
    "evaluate_run",
    "export_sparta",
    "fgsm_rs_loss",
    "import_sparta",
    "load_checkpoint",
    "load_dataset",
    "load_pretrained",
    "model_names",
    "pgd_at_loss",
    "pretrained_names",
    "save_checkpoint",
    "share_sparta",
    "site_summaries",
    "sparta_sites",
    "trades_loss",
    "train",
]
