"""The artifact contract, owned in one place: what an exported item is and how it is run.

Torch-free and FastAPI-free, so that `training` (writes adapters), `export` (writes the artifact folder)
and `app` (serves it) all build on it and none of them needs another's internals:
  item_ids      the item-id rule
  decoding      softmax, expected score, thresholds -> score, the default review threshold
  fingerprints  config fingerprints and file hashes
  manifest      the artifact manifest: typed reading (items, members, backbones, history), writing, format 1
  onnx_runtime  ONNX Runtime sessions, the tokenizer wrapper, the trunk run, head runners
  answer_tokens what the model reads of an answer: ids, their digest, readable and unknown tokens
"""
