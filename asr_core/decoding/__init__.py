"""Decoding and scoring: greedy CTC transcription of manifests and files, WER/CER."""

from asr_core.decoding.infer import Transcript, transcribe_files, transcribe_manifest
from asr_core.decoding.metrics import UttErrors, corpus_errors, utterance_errors

__all__ = ["Transcript", "UttErrors", "corpus_errors", "transcribe_files", "transcribe_manifest", "utterance_errors"]
