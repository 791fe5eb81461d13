"""Models: a registry of torch nn.Modules mapping features [batch, in_channels, n_bins, frames] to logits.

    model = build_model("compact_cnn", n_classes=2)        # names: sorted(MODELS)
    report = load_pretrained(model, "Cnn14_mAP=0.431.pth")  # local checkpoints only

Every model pools globally over time, so any frame count from ~32 up works, and exports to
ONNX with dynamic batch and frame axes. "dual" takes two inputs: forward(mfcc, logmel).
"""

from respira.models import cnn, mobilenet, panns, resnet  # noqa: F401  (each registers its models)
from respira.models.pretrained import load_pretrained
from respira.models.registry import MODELS, build_model, model_params, register

__all__ = ["MODELS", "build_model", "load_pretrained", "model_params", "register"]
