"""Knowledge extraction: entities and relations found in text, code symbols, and entity
resolution across sources. One job per module:

- `keys`: normalised names, resolution keys and the ids of extracted entities;
- `rules`: deterministic rules that need no model (e-mails, handles, URLs, issue refs, dates,
  acronym definitions, code identifiers);
- `ner`: the spaCy named-entity model, batched;
- `default`: the default extractor (rules + NER) and sentence co-occurrence;
- `cache`: extraction results by content hash, so unchanged text is never read twice;
- `stage`: the pipeline stage that turns extractions into entities and relations;
- `resolve`: the resolution cascade and its recorded, reversible decisions;
- `llm`: the optional LLM extractor (OpenAI-compatible chat API or MCP sampling);
- `code/`: code symbols (parsed with tree-sitter) and `code_stage`, which links them.
"""
