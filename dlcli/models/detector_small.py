"""A small Faster R-CNN (Ren et al. 2015; the book's 8.4): torchvision's FasterRCNN (region proposal
network + RoIAlign + box head) on a compact convolutional backbone sized for 128x128 scenes.

Two backbones, both with one stride-8 feature map:
- "fcn" (default): the encoder of our small FCN (dlcli/models/fcn_small.py), stages 1-4, with the
  stride-16 stage added back onto stride 8 (a two-level FPN). Its layers have the FCN's names, so a
  trained FCN's encoder can initialise it (transfer learning: what the FCN learned about the shapes
  is what the detector needs) and it takes [0, 1] input like the FCN;
- "conv": a plain conv net trained from scratch (ImageNet-style input normalisation).
Anchors cover the object sizes of the scene world (about 12 to 50 pixels). Images are resized so
their short side is `image_size` (a no-op for scenes); boxes come back in original pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
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


class FCNBackbone(nn.Module):
    """FCNSmall's encoder (same parameter names: stage1..stage4) + a two-level FPN to stride 8."""

    def __init__(self, width: int = 16, out_channels: int = 64) -> None:
        super().__init__()
        from dlcli.models.fcn_small import FCNSmall

        fcn = FCNSmall(num_classes=2, width=width)
        self.stage1, self.stage2, self.stage3, self.stage4 = fcn.stage1, fcn.stage2, fcn.stage3, fcn.stage4
        w = int(width)
        self.lateral3 = nn.Conv2d(4 * w, out_channels, 1)
        self.lateral4 = nn.Conv2d(6 * w, out_channels, 1)
        self.smooth = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.out_channels = int(out_channels)
        self.frozen = False

    def freeze_encoder(self) -> None:
        """Keep stage1..stage4 as they are (e.g. a trained FCN's): no gradients, batch norm in eval."""
        self.frozen = True
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            stage.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "FCNBackbone":
        super().train(mode)
        if self.frozen:
            for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
                stage.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            f3 = self.stage3(self.stage2(self.stage1(x)))
            f4 = self.stage4(f3)
        p = self.lateral3(f3) + F.interpolate(self.lateral4(f4), size=f3.shape[-2:], mode="nearest")
        return F.relu(self.smooth(p))

    def load_fcn_encoder(self, state_dict: dict[str, torch.Tensor]) -> int:
        """Copy stage1..stage4 from an FCNSmall state dict (same width); returns how many tensors."""
        own = self.state_dict()
        picked = {k: v for k, v in state_dict.items() if k.split(".", 1)[0] in ("stage1", "stage2", "stage3", "stage4")}
        bad = [k for k, v in picked.items() if k not in own or own[k].shape != v.shape]
        if bad or not picked:
            raise ValueError(f"not an FCNSmall encoder of this width (mismatch at {bad[:3] or 'all keys'})")
        self.load_state_dict(picked, strict=False)
        return len(picked)


class GridRoIAlign(nn.Module):
    """RoIAlign over one feature map with `grid_sample` (`sampling`^2 bilinear samples per output bin, averaged).

    Same job as torchvision's MultiScaleRoIAlign(["0"], output_size, sampling_ratio=sampling), whose CPU
    backward pass took about a third of a training step here; grid_sample's backward is vectorised.
    Called as box_roi_pool(features, proposals, image_shapes), like torchvision's."""

    def __init__(self, output_size: int = 7, sampling: int = 2) -> None:
        super().__init__()
        self.output_size = int(output_size)
        self.sampling = int(sampling)

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        x = features["0"] if isinstance(features, dict) else features
        _, c, h, w = x.shape
        # The feature stride, from the padded batch size (as torchvision infers it): a power of two.
        pad_h = max(s[0] for s in image_shapes)
        stride = 2.0 ** round(math.log2(max(pad_h, 1) / h)) if h else 1.0
        n = self.output_size * self.sampling
        steps = (torch.arange(n, device=x.device, dtype=x.dtype) + 0.5) / n  # sample centres in [0, 1]
        out = []
        for b, boxes in enumerate(proposals):
            if boxes.numel() == 0:
                out.append(x.new_zeros((0, c, self.output_size, self.output_size)))
                continue
            boxes = boxes.to(x.dtype) / stride
            xs = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * steps  # (R, n), feature pixels
            ys = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * steps
            gx = xs * (2.0 / w) - 1.0  # align_corners=False: pixel edges at -1 and 1
            gy = ys * (2.0 / h) - 1.0
            r = boxes.shape[0]
            grid = torch.stack((gx[:, None, :].expand(r, n, n), gy[:, :, None].expand(r, n, n)), dim=-1)
            sampled = F.grid_sample(x[b:b + 1], grid.reshape(1, r * n, n, 2), mode="bilinear",
                                    padding_mode="zeros", align_corners=False)  # (1, C, R*n, n)
            sampled = sampled.reshape(c, r, n, n).permute(1, 0, 2, 3)
            out.append(F.avg_pool2d(sampled, self.sampling) if self.sampling > 1 else sampled)
        return torch.cat(out, dim=0)


def fasterrcnn_small(
    num_classes: int = 5,
    backbone: str = "fcn",
    width: int = 16,
    out_channels: int = 64,
    representation: int = 128,
    image_size: int = 128,
    anchor_sizes: tuple[int, ...] = (12, 18, 26, 36, 50),
) -> FasterRCNN:
    """A randomly initialised small Faster R-CNN (never downloads)."""
    if backbone == "fcn":
        body: nn.Module = FCNBackbone(width, out_channels)
        # The FCN encoder was trained on [0, 1] pixels: no mean/std normalisation.
        norm = {"image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0]}
    elif backbone == "conv":
        body = SmallBackbone(width, out_channels)
        norm = {}
    else:
        raise ValueError(f"unknown backbone {backbone!r} (fcn or conv)")
    anchors = AnchorGenerator(sizes=(tuple(int(s) for s in anchor_sizes),), aspect_ratios=((0.75, 1.0, 1.33),))
    # FasterRCNN type-checks its pooler; GridRoIAlign (same result, faster backward) replaces it below.
    roi_pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=1)
    head = TwoMLPHead(out_channels * 7 * 7, int(representation))
    model = FasterRCNN(
        body,
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
        **norm,
    )
    model.roi_heads.box_roi_pool = GridRoIAlign(output_size=7, sampling=1)
    return model
