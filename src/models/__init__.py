"""The MindSpore networks. This file imports nothing heavy, so its names are cheap to use."""

# ResNet stages in network order, as torchvision names them.
STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")
