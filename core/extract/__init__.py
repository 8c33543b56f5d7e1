"""Extraction: corpus → tokens with POS → the model's routing, written to the run store.

corpus, ptb, align, tagsets read and align the annotation; models, architectures, capture, distributed, logits
load a model and hook its routers; options and events declare the extraction options and progress events;
pipeline drives it all (``pipeline.extract``); provenance records what a run was made with.
"""
