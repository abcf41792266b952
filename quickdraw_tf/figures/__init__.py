"""The figures visualize draws, one module a kind: inputs, conv (activations, filters), strokes, embeddings."""
