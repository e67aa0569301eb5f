"""Image models: pixel_values from the folder's image processor, no tokenizer."""

from edgeinfer.exporters.architectures import Modality, declare

declare(
    "vit",
    Modality.IMAGE,
    "image-classification",
    "feature-extraction",
    torchscript_first="ONNX Runtime runs the TorchScript graph of ViT 1.05x (batch 1) to 1.08x (batch 8) faster in FP32",
)
declare("dinov2", Modality.IMAGE, "feature-extraction", "image-classification")
declare("resnet", Modality.IMAGE, "image-classification", "feature-extraction")
declare("clip_vision_model", Modality.IMAGE, "feature-extraction")  # CLIP's image tower alone
declare("yolos", Modality.IMAGE, "object-detection")
declare("detr", Modality.IMAGE, "object-detection")
declare("segformer", Modality.IMAGE, "semantic-segmentation")
