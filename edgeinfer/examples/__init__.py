"""Small real examples that ship with edgeinfer: the demo and the tests are built on them."""

from pathlib import Path

# Sentences for calibration, embedding-quality checks and LLM scoring, written for this project.
SENTENCES = Path(__file__).with_name("sentences.txt")
