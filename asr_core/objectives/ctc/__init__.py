"""The CTC objective: evaluation (greedy, beam search + LM), export, benchmark, transcription."""
