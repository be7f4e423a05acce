"""Self-supervised pre-training over several catalogs, and starting a model from the result.

``mtrec pretrain --datasets A,B --out DIR`` trains the text-based model (no ID embeddings,
which cannot carry over to another catalog) on the union of the datasets' sequences with no
task labels (:mod:`mtrec.pretrain.run`); ``mtrec train --init DIR`` starts any model from it
(:mod:`mtrec.pretrain.init`).
"""
