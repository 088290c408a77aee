"""A small Faster R-CNN (Ren et al. 2015; the book's 8.4): torchvision's FasterRCNN (region proposal
network + RoIAlign + box head) on a compact convolutional backbone sized for 128x128 scenes.

The backbone has stride 8 and one feature map; anchors cover the object sizes of the scene world
(about 12 to 48 pixels). Images are not resized (min_size = max_size = `image_size`) because the
scenes are already small; normalisation to ImageNet-style mean/std happens inside the model.
"""

from __future__ import annotations

import torch.nn as nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SmallBackbone(nn.Sequential):
    """Stride-8 conv net; `out_channels` is what FasterRCNN reads to size its heads."""

    def __init__(self, width: int = 32, out_channels: int = 64) -> None:
        w = int(width)
        super().__init__(
            *_conv(3, w, 2),
            *_conv(w, w),
            *_conv(w, 2 * w, 2),
            *_conv(2 * w, 2 * w),
            *_conv(2 * w, 3 * w, 2),
            *_conv(3 * w, 3 * w),
            *_conv(3 * w, 3 * w, dilation=2),
            nn.Conv2d(3 * w, out_channels, 1),
            nn.ReLU(inplace=True),
        )
        self.out_channels = int(out_channels)


def fasterrcnn_small(
    num_classes: int = 5,
    width: int = 32,
    out_channels: int = 64,
    representation: int = 256,
    image_size: int = 128,
    anchor_sizes: tuple[int, ...] = (12, 18, 26, 36, 50),
) -> FasterRCNN:
    """A randomly initialised small Faster R-CNN (never downloads)."""
    backbone = SmallBackbone(width, out_channels)
    anchors = AnchorGenerator(sizes=(tuple(int(s) for s in anchor_sizes),), aspect_ratios=((0.75, 1.0, 1.33),))
    roi_pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=1)
    head = TwoMLPHead(out_channels * 7 * 7, int(representation))
    return FasterRCNN(
        backbone,
        num_classes=None,  # given through box_predictor, sized to our head
        min_size=int(image_size),
        max_size=int(image_size),
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=head,
        box_predictor=FastRCNNPredictor(int(representation), int(num_classes)),
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_batch_size_per_image=64,
        box_detections_per_img=20,
        box_score_thresh=0.01,
    )
