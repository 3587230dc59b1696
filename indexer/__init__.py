"""Corpus to index: reading, chunking, extraction, tables, embeddings and the LanceDB store."""
