"""Corpus sources, tokenizer, shard format, encoding, the prepare stage and the loaders.

Modules, one job each:

- `shards`: the binary shard format (read, write, stream-write, list).
- `layout`: where prepare's outputs live under ``data.out_dir``.
- `source_registry`: ``data.source`` name -> the source's opener (``data.sources.<name>``).
- `embedded`, `sources`: where documents come from and how they are cleaned.
- `hub`: fetching the published shards or documents from the Hugging Face Hub (``fineweb``).
- `local_shards`: a local directory of ready shards (``shards``).
- `tokenizer`: training and loading the SentencePiece BPE model.
- `encode`: documents -> ``[bos] + ids``, batched on every core.
- `manifest`: per-file records (sha256, tokens, documents) for ``manifest.json``.
- `prepare`: the stage itself, built in a temporary directory and swapped in.
- `loader`: the distributed train-token loader and the validation tokens.
"""
