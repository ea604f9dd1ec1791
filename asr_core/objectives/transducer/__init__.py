"""The transducer objective: evaluation (greedy, beam search), export, streaming benchmark, transcription."""
