"""Speech encoders over raw waveforms (Wav2Vec2 and its kin): input_values from the folder's
feature extractor; CTC transcription, clip classification, or the hidden states. HuBERT, WavLM
and the other Wav2Vec2-shaped encoders export through the same tasks, undeclared."""

from edgeinfer.exporters.architectures import Modality, declare

declare("wav2vec2", Modality.AUDIO, "ctc", "audio-classification", "feature-extraction")
