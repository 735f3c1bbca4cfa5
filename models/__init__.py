"""Models: the ResNet backbone, the Siamese sync/flip network with loss (1), the pose regressor."""
from .backbone import FEATURES, backbone, freeze
from .loss import accuracy, ssl_loss
from .pose import PoseRegressor
from .siamese import FUSIONS, SiameseSync, fuse

__all__ = ["FEATURES", "backbone", "freeze", "accuracy", "ssl_loss", "PoseRegressor",
           "FUSIONS", "SiameseSync", "fuse"]
