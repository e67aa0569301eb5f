"""Small real examples that ship with edgeinfer: the demo and the tests are built on them."""

from pathlib import Path

# Sentences for calibration, embedding-quality checks and LLM scoring, written for this project.
SENTENCES = Path(__file__).with_name("sentences.txt")

# A few thousand tokens of public-domain English for perplexity and the GGUF export's parity
# check: the Declaration of Independence (1776), Lincoln's Gettysburg Address (1863) and his
# Second Inaugural Address (1865). Unlike SENTENCES, it is not repetitive.
PUBLIC_DOMAIN_TEXT = Path(__file__).with_name("public_domain.txt")
