"""Encoder-decoders, exported as an encoder and a KV-cache decoder into a folder (exporters/seq2seq.py)."""

from edgeinfer.exporters.architectures import Modality, declare

declare("t5", Modality.TEXT, "seq2seq-lm")
declare("bart", Modality.TEXT, "seq2seq-lm")
declare("marian", Modality.TEXT, "seq2seq-lm")
declare("whisper", Modality.AUDIO, "speech-seq2seq")
