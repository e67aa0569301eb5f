"""An audio-classification head (keyword spotting, speaker or emotion labels): class logits of a
raw waveform, through the folder's feature extractor."""

from edgeinfer.exporters.tasks import ExportTask, register_task
from edgeinfer.exporters.tasks._inputs import audio_inputs

# Audio encoders name their clip-level head ...ForSequenceClassification like the text models do:
# the architecture names are listed in full so the longer match wins over text-classification's suffix.
AUDIO_ENCODERS = (
    "Wav2Vec2",
    "Wav2Vec2Conformer",
    "Hubert",
    "WavLM",
    "Data2VecAudio",
    "UniSpeech",
    "UniSpeechSat",
    "SEW",
    "SEWD",
)

register_task(
    ExportTask(
        name="audio-classification",
        auto_class="AutoModelForAudioClassification",
        architectures=("ForAudioClassification", *(f"{m}ForSequenceClassification" for m in AUDIO_ENCODERS)),
        outputs=("logits",),
        inputs=audio_inputs,
    )
)
