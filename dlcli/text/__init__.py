"""Text for captioning: the vocabulary, corpus BLEU and caption search (greedy, beam)."""
